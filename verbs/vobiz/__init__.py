"""Vobiz XML elements: one module per element; this module maps element names to their classes."""
from .conference import Conference
from .dial import Dial, Number, User
from .dtmf import DTMF
from .gather import Gather, GetDigits, GetInput
from .hangup import Hangup
from .play import Play
from .preanswer import PreAnswer
from .record import Record
from .redirect import Redirect
from .speak import Speak
from .stream import Stream
from .wait import Wait

ELEMENTS = {cls.name: cls for cls in (Speak, Play, Wait, Hangup, Redirect, PreAnswer, DTMF, Gather,
                                      GetInput, GetDigits, Record, Stream, Dial, Number, User, Conference)}

# What <Response> may contain (vobiz.md §1.2, plus the Plivo aliases GetDigits and GetInput)
RESPONSE_CHILDREN = ("Speak", "Play", "Wait", "Hangup", "Redirect", "PreAnswer", "DTMF", "Gather",
                     "GetInput", "GetDigits", "Record", "Stream", "Dial", "Conference")

# Elements that exist in the SDKs but that callfork (like Vobiz) does not run
NOT_SUPPORTED = {
    "MultiPartyCall": "<MultiPartyCall> is not supported by callfork (Vobiz has no equivalent either)",
    "Message": "<Message> (SMS) is not supported by callfork",
}

__all__ = ["ELEMENTS", "RESPONSE_CHILDREN", "NOT_SUPPORTED", "Conference", "Dial", "Number", "User", "DTMF",
           "Gather", "GetDigits", "GetInput", "Hangup", "Play", "PreAnswer", "Record", "Redirect", "Speak",
           "Stream", "Wait"]
