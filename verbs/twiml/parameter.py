"""TwiML <Parameter name value>: one custom parameter of a <Stream>, sent to the app in the `start`
message's customParameters (https://www.twilio.com/docs/voice/twiml/stream#custom-parameters)."""
from ..base import Attr, Text
from .element import TwimlVerb


class Parameter(TwimlVerb):
    name = "Parameter"
    ATTRIBUTES = (
        Attr("name", "param_name", Text(nonempty=True, max_bytes=256), None, required=True),
        Attr("value", "value", Text(strip=False, max_bytes=4096), ""),
    )
