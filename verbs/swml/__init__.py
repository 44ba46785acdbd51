"""SWML methods: one module per supported method; this module maps method names to classes."""
from .answer import Answer
from .connect import Connect
from .hangup import Hangup
from .method import ParseOptions, SwmlMethod, UnsupportedMethod
from .play import Play, PlayItem
from .record_call import RecordCall
from .sleep import Sleep
from .stop_record_call import StopRecordCall
from .stop_stream import StopStream
from .stream import Stream
from .switch import Switch
from .transfer import Transfer

METHODS = {cls.name: cls for cls in (Answer, Play, Sleep, Hangup, RecordCall, StopRecordCall, Stream,
                                     StopStream, Connect, Switch, Transfer)}

# Parsed into UnsupportedMethod: running them raises NotSupportedError
UNSUPPORTED_METHODS = ("set", "unset", "label", "goto", "execute", "return", "cond",
                       "prompt", "record", "request", "tap", "stop_tap")

__all__ = ["METHODS", "UNSUPPORTED_METHODS", "Answer", "Connect", "Hangup", "ParseOptions", "Play",
           "PlayItem", "RecordCall", "Sleep", "StopRecordCall", "StopStream", "Stream", "SwmlMethod", "Switch", "Transfer",
           "UnsupportedMethod"]
