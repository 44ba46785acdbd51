"""TwiML, and the rest of Twilio's contract on the call side: the parser (parser.py) and one module per
TwiML verb, whose element table is here; Twilio's request parameters (request_params.py),
Call/Stream/Recording SIDs (sids.py) and the call's status callbacks (status_callback.py)."""
from .conference import Conference
from .connect import Connect
from .dial import Dial
from .gather import Gather
from .hangup import Hangup
from .number import Number
from .parameter import Parameter
from .pause import Pause
from .play import Play
from .record import Record
from .redirect import Redirect
from .reject import Reject
from .request_params import API_VERSION, e164, twilio_params
from .say import Say
from .sids import call_sid, call_uuid, recording_sid, stream_sid
from .sip import Sip
from .start import Start
from .stop import Stop
from .stream import Stream

# The TwiML element table: every verb and noun class callfork runs, and what <Response> may hold.
# Dial (with Number, Sip, Conference), Connect, Stream, Parameter, Start and Stop join here: add the
# class to VERBS (nouns too: a parent's CHILDREN names them) and the verbs to RESPONSE_CHILDREN; their
# names then drop out of NOT_SUPPORTED by themselves.
VERBS = (Say, Play, Pause, Gather, Record, Hangup, Reject, Redirect, Dial, Number, Sip, Conference, Connect, Stream,
         Parameter, Start, Stop)
RESPONSE_CHILDREN = ("Say", "Play", "Pause", "Gather", "Record", "Hangup", "Reject", "Redirect", "Dial", "Connect",
                     "Start", "Stop")
ELEMENTS = {cls.name: cls for cls in VERBS}

_NOT_YET = "is not supported by callfork yet"
_NEVER = "is not supported by callfork"
# TwiML's other verbs and nouns (https://www.twilio.com/docs/voice/twiml), refused with a message
NOT_SUPPORTED = {name: f"<{name}> {why}" for name, why in (
    ("Dial", _NOT_YET), ("Number", _NOT_YET), ("Sip", _NOT_YET), ("Conference", _NOT_YET),
    ("Connect", _NOT_YET), ("Stream", _NOT_YET), ("Parameter", _NOT_YET), ("Start", _NOT_YET),
    ("Stop", _NOT_YET),
    ("Enqueue", _NEVER), ("Leave", _NEVER), ("Queue", _NEVER), ("Client", _NEVER), ("Refer", _NEVER),
    ("Pay", _NEVER), ("Prompt", _NEVER), ("Echo", _NEVER), ("Sms", f"(SMS) {_NEVER}"),
    ("Message", f"(SMS) {_NEVER}"), ("Siprec", _NEVER), ("Transcription", _NEVER), ("Recording", _NEVER),
    ("Conversation", _NEVER), ("ConversationRelay", _NEVER), ("VirtualAgent", _NEVER), ("Assistant", _NEVER),
    ("AiSession", _NEVER), ("Autopilot", _NEVER), ("Room", _NEVER), ("Application", _NEVER),
    ("Identity", _NEVER), ("Sim", _NEVER), ("Task", _NEVER), ("Config", _NEVER), ("Language", _NEVER),
) if name not in ELEMENTS}

__all__ = ["ELEMENTS", "RESPONSE_CHILDREN", "NOT_SUPPORTED", "VERBS", "Gather", "Hangup", "Pause", "Play",
           "Record", "Redirect", "Reject", "Say", "API_VERSION", "e164", "twilio_params", "call_sid",
           "call_uuid", "recording_sid", "stream_sid"]
