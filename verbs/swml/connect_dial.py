"""SWML connect to phone numbers and sip: URIs (https://developer.signalwire.com/swml/methods/connect/):
one destination (`to`), several at once (`parallel`), one after the other (`serial`), or groups
rung at once tried one after the other (`serial_parallel`), on the dial machinery of Vobiz <Dial>
(verbs/dialing.py: FreeSWITCH's `bridge`, `,` between legs rung at once, `|` between groups).

`from`, `timeout`, `call_state_url` and `call_state_events` apply to every destination unless a
destination gives its own; `headers` ({name, value} objects) go on the INVITE of sip: destinations
as they are named; `max_duration` limits the bridged call; `answer_on_bridge` leaves the caller
unanswered until a destination answers (the bridge answers it), otherwise the caller is answered
first and hears a ringback tone while the destinations ring; `ringback` (one audio file URL)
replaces that tone. The legs' states go to call_state_url (verbs/swml/call_state.py).

Afterwards `vars.connect_result` (and `return_value`) is `connected` or `failed`, with
`connect_failed_reason` (FreeSWITCH's cause: USER_BUSY, NO_ANSWER, ...) when it failed; when a
bridge ends (the callee hangs up, max_duration) the document goes on with its next method.
Everything else connect documents (`result`, `confirm`, `codecs`, `username`/`password`, ...) is
refused when the document is parsed (NotSupportedValue), so `callfork validate` reports it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..base import Attr, AttrError, Bool, Custom, Int, NotSupportedValue, check_url
from ..dial_plan import DialError, DialPlan, DialTarget
from ..dialing import Dialer
from .call_state import DEFAULT_EVENTS, STATES, CallStateReporter
from .method import HTTP_URL, SwmlMethod, call_vars, json_type

PHONE = re.compile(r"\+?[0-9]{2,20}")
SIP_URI = re.compile(r"sips?:[^\s@,'\"\[\]{}|^$\\]+(@[^\s@,'\"\[\]{}|^$\\]+)?", re.IGNORECASE)
CALLER_ID = re.compile(r"[^\s,'\"\[\]{}|^$\\]{1,128}")
HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.]{0,63}")
HEADER_VALUE = re.compile(r"[^,'\"\[\]{}|^$\\\x00-\x1f]{0,512}")
MAX_DESTINATIONS = 64
DESTINATION_KEYS = ("to", "from", "timeout", "call_state_url", "call_state_events")
NOT_YET = {   # documented parameters callfork does not apply: refused when the document is parsed
    "result": "connect result (a switch/cond on the outcome) is not supported by callfork yet; "
              "read vars.connect_result in a later method instead",
    "confirm": "connect confirm is not supported by callfork yet",
    "confirm_timeout": "connect confirm_timeout is not supported by callfork yet",
    "codecs": "connect codecs is not supported by callfork (FreeSWITCH's codec settings apply)",
    "session_timeout": "connect session_timeout is not supported by callfork",
    "username": "connect username/password (SIP authentication) is not supported by callfork",
    "password": "connect username/password (SIP authentication) is not supported by callfork",
    "encryption": "connect encryption is not supported by callfork (the sofia profile decides)",
    "webrtc_media": "connect webrtc_media is not supported by callfork",
}


def _address(raw, where="to") -> tuple[str, str]:
    """(kind, address) of a destination: a phone number or a sip: URI."""
    if not isinstance(raw, str):
        raise AttrError(f"{where} must be a phone number or a sip: URI, not {json_type(raw)}")
    text = raw.strip()
    if PHONE.fullmatch(text):
        return "number", text
    if text.lower().startswith(("sip:", "sips:")):
        if not SIP_URI.fullmatch(text):
            raise AttrError(f'{where} "{text}" is not a SIP URI callfork can dial (sip:user@host, without '
                            "spaces or , ' \" [ ] { } | ^ $ \\)")
        return "sip", text
    if text.lower().startswith("stream:"):
        raise AttrError(f'{where} "{text}": a stream is connected with connect {{to: "stream:wss://..."}} '
                        "alone, not as a destination of serial or parallel")
    if text.startswith("/") or re.fullmatch(r"[a-z]+:.*", text, re.IGNORECASE):
        raise NotSupportedValue(f'{where} "{text}" is not supported by callfork; use a phone number or a sip: URI')
    raise AttrError(f'{where} "{text}" is not a phone number (digits with an optional leading +) or a sip: URI')


def _caller_id(raw, warnings):
    if not isinstance(raw, str) or not CALLER_ID.fullmatch(raw.strip()):
        raise AttrError("must be a caller ID number or sip: URI without spaces or , ' \" [ ] { } | ^ $ \\")
    return raw.strip()


def _events(raw, warnings):
    if not isinstance(raw, list) or not all(isinstance(e, str) for e in raw):
        raise AttrError(f"must be an array of event names ({', '.join(STATES)})")
    unknown = [e for e in raw if e not in STATES]
    if unknown:
        raise AttrError(f"unknown call state event {unknown[0]!r}; allowed: {', '.join(STATES)}")
    return tuple(raw)


def _headers(raw, warnings):
    if not isinstance(raw, list):
        raise AttrError(f"must be an array of {{name, value}} objects, not {json_type(raw)}")
    headers = {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"name", "value"}:
            raise AttrError(f"[{index}] must be an object with exactly name and value")
        name, value = item["name"], item["value"]
        if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
            raise AttrError(f"[{index}].name {name!r} is not a SIP header name (letters, digits, - _ .)")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or \
                not HEADER_VALUE.fullmatch(str(value)):
            raise AttrError(f"[{index}].value must be text without , ' \" [ ] {{ }} | ^ $ \\ or control characters")
        headers[name] = str(value)
    return headers


def _ringback(raw, warnings):
    if not isinstance(raw, list) or not raw or not all(isinstance(u, str) for u in raw):
        raise AttrError("must be an array of play URLs")
    if len(raw) > 1:
        raise NotSupportedValue("ringback with more than one URL is not supported by callfork; give one audio file URL")
    url = raw[0].strip()
    if not url.lower().startswith(("http://", "https://")):
        raise NotSupportedValue(f'ringback "{url}" is not supported by callfork; give one http(s) audio file URL')
    return check_url(url, ("http", "https"))


def _not_yet(message):
    def parse(raw, warnings):
        raise NotSupportedValue(message)
    return Custom(parse, "not supported")


TIMEOUT = Int(minimum=1, maximum=600)
EVENTS = Custom(_events, "array of created|ringing|answered|ended")
CALLER = Custom(_caller_id, "caller ID")


@dataclass
class Destination:
    kind: str
    to: str
    caller_id: str | None
    timeout: int | None
    call_state_url: str | None
    call_state_events: tuple


def _destination(raw, where) -> dict:
    """One destination object, checked: its raw keys with their parsed values."""
    if not isinstance(raw, dict):
        raise AttrError(f"{where} must be a destination object ({{to: ...}}), not {json_type(raw)}")
    unknown = [k for k in raw if k not in DESTINATION_KEYS]
    for key in unknown:
        if key in NOT_YET:
            raise NotSupportedValue(f"{where}.{key}: {NOT_YET[key]}")
        raise AttrError(f"{where}: unknown destination parameter {key!r}; allowed: {', '.join(DESTINATION_KEYS)}")
    if "to" not in raw:
        raise AttrError(f"{where}.to is required")
    parsed = {"to": _address(raw["to"], f"{where}.to")}
    readers = {"from": CALLER, "timeout": TIMEOUT, "call_state_url": HTTP_URL, "call_state_events": EVENTS}
    for key, reader in readers.items():
        if key in raw:
            try:
                parsed[key] = reader.parse(raw[key], [])
            except NotSupportedValue as exc:
                raise NotSupportedValue(f"{where}.{key}: {exc}") from None
            except AttrError as exc:
                raise AttrError(f"{where}.{key}: {exc}") from None
    return parsed


def _group_list(name, nested=False):
    def parse(raw, warnings):
        if not isinstance(raw, list) or not raw:
            raise AttrError(f"must be a non-empty array of {'arrays of ' if nested else ''}destination objects")
        groups = []
        for i, item in enumerate(raw):
            if nested:
                if not isinstance(item, list) or not item:
                    raise AttrError(f"[{i}] must be a non-empty array of destination objects")
                groups.append([_destination(d, f"[{i}][{j}]") for j, d in enumerate(item)])
            else:
                groups.append(_destination(item, f"[{i}]"))
        if name == "parallel":
            return [groups]
        if name == "serial":
            return [[d] for d in groups]
        return groups
    return Custom(parse, f"{name} destinations")


class ConnectDial(SwmlMethod):
    name = "connect"
    ATTRIBUTES = (
        Attr("to", "to", Custom(lambda raw, w: _address(raw), "phone number or sip: URI"), None),
        Attr("serial", "serial", _group_list("serial"), None),
        Attr("parallel", "parallel", _group_list("parallel"), None),
        Attr("serial_parallel", "serial_parallel", _group_list("serial_parallel", nested=True), None),
        Attr("from", "caller_id", CALLER, None),
        Attr("headers", "headers", Custom(_headers, "array of {name, value}"), {}),
        Attr("timeout", "timeout", TIMEOUT, 60),
        Attr("max_duration", "max_duration", Int(minimum=1, maximum=14400), 14400),
        Attr("answer_on_bridge", "answer_on_bridge", Bool(), False),
        Attr("call_state_url", "call_state_url", HTTP_URL, None),
        Attr("call_state_events", "call_state_events", EVENTS, DEFAULT_EVENTS),
        Attr("ringback", "ringback", Custom(_ringback, "array with one audio file URL"), None),
    ) + tuple(Attr(key, f"not_{key}", _not_yet(message), None) for key, message in NOT_YET.items())

    def check(self):
        given = [name for name in ("to", "serial", "parallel", "serial_parallel") if name in self.present
                 or name in self.failed]
        if len(given) == 1:
            groups = self.groups
            if sum(len(g) for g in groups) > MAX_DESTINATIONS:
                return [f"at most {MAX_DESTINATIONS} destinations"]
            return []
        if not given:
            return ["give one of to, serial, parallel or serial_parallel"]
        return [f"give only one of to, serial, parallel or serial_parallel, not {' and '.join(given)}"]

    @property
    def groups(self) -> list:
        """[[raw destination dict, ...] per group tried in order]."""
        if self.to is not None:
            return [[{"to": self.to}]]
        return self.serial or self.parallel or self.serial_parallel or []

    def destinations(self) -> list:
        """[(group index, Destination)] in dial order, with the method's defaults filled in."""
        out = []
        for index, group in enumerate(self.groups):
            for raw in group:
                kind, to = raw["to"]
                out.append((index, Destination(kind, to, raw.get("from", self.caller_id),
                                               raw.get("timeout", self.timeout),
                                               raw.get("call_state_url", self.call_state_url),
                                               raw.get("call_state_events", self.call_state_events))))
        return out

    def summary(self) -> str:
        groups = [" & ".join(d.to for g, d in self.destinations() if g == i) for i in range(len(self.groups))]
        return f"connect {' then '.join(groups)} timeout={self.timeout}"

    def plan(self, ringback_file=None) -> tuple[DialPlan, list]:
        destinations = self.destinations()
        targets = [DialTarget(d.kind, d.to, sip_headers=dict(self.headers) if d.kind == "sip" else {},
                              timeout_s=d.timeout, caller_id=d.caller_id, group=group)
                   for group, d in destinations]
        plan = DialPlan(targets, timeout_s=self.timeout, time_limit_s=self.max_duration, header_prefix="",
                        ringback=True, ringback_file=ringback_file)
        return plan, [d for _, d in destinations]

    def run(self, call) -> None:
        """Dial, bridge the caller to the first destination that answers, and set the outputs."""
        if not self.answer_on_bridge:
            call.ensure_answered()
        ringback_file = None
        if self.ringback:
            try:
                ringback_file = str(call.services.media_file(self.ringback))
            except Exception as exc:   # MediaError or a failed download: the ringback tone instead
                call.error(f"connect line {self.line}: ringback {self.ringback} not played: {exc}")
        plan, destinations = self.plan(ringback_file)
        reporter = CallStateReporter(call, destinations)
        variables = call_vars(call)
        try:
            result = Dialer(call, plan, on_leg=reporter.on_leg, on_state=reporter.on_state).run()
        except DialError as exc:
            call.error(f"connect line {self.line}: {exc}")
            variables.update(connect_result="failed", return_value="failed", connect_failed_reason=str(exc))
            return
        bridged = result.bridged_leg
        call.timeline("connect_result", {"status": result.status, "cause": result.hangup_cause,
                                         "b_leg": bridged.uuid if bridged else ""})
        if bridged is not None:
            variables.update(connect_result="connected", return_value="connected")
            variables.pop("connect_failed_reason", None)
        else:
            variables.update(connect_result="failed", return_value="failed",
                             connect_failed_reason=result.hangup_cause)
