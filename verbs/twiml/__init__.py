"""TwiML, and the rest of Twilio's contract on the call side: the parser and one module per TwiML verb,
Twilio's request parameters (request_params.py), Call/Stream/Recording SIDs (sids.py) and the call's
status callbacks (status_callback.py)."""
from .request_params import API_VERSION, e164, twilio_params
from .sids import call_sid, call_uuid, recording_sid, stream_sid

__all__ = ["API_VERSION", "e164", "twilio_params", "call_sid", "call_uuid", "recording_sid", "stream_sid"]
