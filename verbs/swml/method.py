"""What every SWML method class shares: reading its parameters (an object, or a scalar for some)."""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import ClassVar

from ..base import AttrError, Bool, Custom, Enum, NotSupportedValue, Url, Verb, check_url
from ..errors import NotSupportedError

BOOL = Bool()
METHOD = Enum("GET", "POST", case_insensitive=True)
HTTP_URL = Url(("http", "https"))


@dataclass
class ParseOptions:
    """Options of SWML parsing.

    allow_insecure_ws: accept ws:// (not only wss://) stream URLs. Default True because the demo and
    the tests run on loopback; set it to False in production to require wss:// as SignalWire does.
    """
    allow_insecure_ws: bool = True


@dataclass
class StepResult:
    verb: Verb | None
    errors: list = field(default_factory=list)
    unsupported: list = field(default_factory=list)


class SwmlMethod(Verb):
    """A SWML method. ATTRIBUTES are its parameters (JSON keys)."""
    SCALAR: ClassVar[str | None] = None   # Python name a scalar value maps to ({"sleep": 5000})

    def __init__(self, line=0, column=0, text="", children=None, **values):
        super().__init__(line, column, text, children, **values)
        self.params: dict = {}
        self.options = ParseOptions()

    @classmethod
    def from_value(cls, value, line: int, column: int, options: ParseOptions) -> StepResult:
        verb = cls(line, column)
        verb.options = options
        if value is None:
            value = {}
        if not isinstance(value, dict):
            if cls.SCALAR is None:
                return StepResult(None, [f"the parameters must be an object, not {json_type(value)}"])
            spec = next(s for s in cls.ATTRIBUTES if s.py == cls.SCALAR)
            value = {spec.xml: value}
        verb.params = value
        result = cls.read_attributes(value)
        verb.apply(result)
        errors, unsupported = list(result.errors), list(result.unsupported)
        for message in verb.check():
            (unsupported if isinstance(message, NotSupportedValue) else errors).append(str(message))
        return StepResult(verb, errors, unsupported)


def json_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return "an object"


def stringify(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _custom_parameters(raw, warnings):
    if not isinstance(raw, dict):
        raise AttrError(f"must be an object of name: value pairs, not {json_type(raw)}")
    return {str(k): stringify(v) for k, v in raw.items()}


CUSTOM_PARAMETERS = Custom(_custom_parameters, "object")


def ws_url(raw, options: ParseOptions) -> str:
    """A stream URL: wss://, or ws:// when options.allow_insecure_ws."""
    if not isinstance(raw, str):
        raise AttrError(f"must be a wss:// URL string, not {json_type(raw)}")
    schemes = ("ws", "wss") if options.allow_insecure_ws else ("wss",)
    try:
        return check_url(raw, schemes)
    except AttrError as exc:
        if not options.allow_insecure_ws and raw.strip().lower().startswith("ws://"):
            raise AttrError(f'"{raw.strip()}": ws:// is not allowed (allow_insecure_ws is off); use wss://') from None
        raise exc


def codec_value(raw, warnings):
    """SWML codec → (canonical, encoding, sample rate). PCMU (8 kHz mu-law), L16 (16 kHz), NAME@RATEh."""
    if not isinstance(raw, str) or not raw.strip():
        raise AttrError("must be a codec name such as PCMU or L16@16000h")
    text = raw.strip()
    m = re.fullmatch(r"([A-Za-z0-9]+)(?:@(\d{1,6})h?)?", text)
    if not m:
        raise AttrError(f'"{text}" is not a codec; use PCMU, L16, or NAME@RATEh such as L16@16000h')
    name, rate = m.group(1).upper(), m.group(2)
    if name == "PCMU":
        if rate not in (None, "8000"):
            raise AttrError(f'"{text}": PCMU is 8000 Hz only')
        return ("PCMU@8000h", "mulaw", 8000)
    if name == "L16":
        rate_hz = int(rate) if rate else 16000
        if rate_hz not in (8000, 16000, 24000):
            raise AttrError(f'"{text}": L16 rates are 8000, 16000 and 24000')
        return (f"L16@{rate_hz}h", "l16", rate_hz)
    raise NotSupportedValue(f'codec "{text}" is not supported by callfork; use PCMU (8 kHz mu-law) or '
                            "L16 (L16@8000h, L16@16000h, L16@24000h)")


CODEC = Custom(codec_value, "PCMU|L16[@rateh]")


class UnsupportedMethod(SwmlMethod):
    """A SWML method callfork parses but does not run yet (set, goto, prompt, ...): `name` is the
    method, `params` its raw value."""
    name = "unsupported"

    @classmethod
    def for_method(cls, method: str, value, line: int, column: int, options: ParseOptions):
        verb = cls(line, column)
        verb.name = method
        verb.options = options
        verb.params = value
        return verb

    def summary(self) -> str:
        return f"{self.name} (not supported by callfork yet)"

    def run(self, call):
        raise NotSupportedError(f"SWML method {self.name} is not supported by callfork yet",
                                self.line, self.column, self.name)


# -- what the run methods share ------------------------------------------------------------------

def call_vars(call) -> dict:
    """The SWML `vars` scope of a call (method outputs such as stream_result, record_call_url)."""
    return call.vars


def call_registry(call, kind: str) -> dict:
    """Per-call registry of background SWML things by control_id (`streams`, `recordings`)."""
    return call.swml_controls.setdefault(kind, {})


def swml_event(call, event_type: str, params: dict) -> dict:
    """A SWML status callback body (`{event_type, event_channel, timestamp, project_id, space_id,
    params}`), with the call's ids in params."""
    body = {"call_id": call.uuid, "node_id": call.uuid, "segment_id": call.uuid}
    body.update(params)
    return {"event_type": event_type, "event_channel": f"swml:{call.uuid}", "timestamp": time.time(),
            "project_id": call.auth_id, "space_id": call.auth_id, "params": body}
