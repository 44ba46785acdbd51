"""Event frames of the lean FreeSWITCH stand-in (bench/lean_switch.py): templates built once from a
real FreeSWITCH's outbound-socket capture, filled per call with only what varies.

Owns: reading `tests/fixtures/fs-captures/outbound-esl-transcript.txt` (FreeSWITCH 1.10.12, a
loopback call driven through `socket ... async full`), taking from its events the parts every
channel event is made of (the standard header block with the capture's Core-UUID / hostname /
addresses, the channel-data block per channel state, the caller profile, the base channel
variables, the Event-Calling-* location of each event), and building from them the events the
lean switch sends, in FreeSWITCH's order and wire format:

* plain: `Name: <url-encoded value>` lines (`switch_sim.urlenc.url_encode`, `_undef_` for an empty
  value), framed `Content-Length: N\\nContent-Type: text/event-plain\\n\\n`;
* json: one compact object (cJSON's unformatted print), framed with `text/event-json`;
* the connect reply: the CHANNEL_DATA event without outer framing, ending with the command/reply
  headers (`Reply-Text: %2BOK%0A`, `Socket-Mode: async`, `Control: full`).

A template is a header list whose varying values are slots (the call's uuid in Unique-ID /
Channel-Call-UUID / Caller-Unique-ID / variable_uuid / variable_call_uuid, the destination number,
the created / answered / hangup times, Event-Date-*, Event-Sequence, Application /
Application-Data / Application-UUID / Application-Response, the hangup cause, and the values of
the channel variables set during the call). It is serialized once per format with placeholder
tokens (`switch_sim.events.Event`, the simulator's serializer, checked byte for byte against the
captures by tests/test_sim_events.py and here by tests/test_bench_lean_switch.py), then split at
the tokens; a frame is the literal pieces joined with the encoded slot values, and the outer
Content-Length computed last. Variables follow FreeSWITCH's list semantics (setting one moves it
to the end), so templates are cached by (event, state, the names of the call's variables).
"""
from __future__ import annotations

import json
import re
import time
from email.utils import formatdate
from pathlib import Path

from switch_sim.events import CALLING_LOCATIONS, Event
from switch_sim.urlenc import url_decode, url_encode

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "tests" / "fixtures" / "fs-captures" / "outbound-esl-transcript.txt"
_BLOCK = re.compile(r"^==== \[t=([\d.]+)\] (\S+)(.*?)====\n(.*?)==== end ====\n", re.S | re.M)
_TOKEN = re.compile(r"LEANSLOT(\d+)X")
_SAFE_PLAIN = re.compile(r"[A-Za-z0-9_.\-/,()*!'~$]*")
_SAFE_JSON = re.compile(r'[^"\\\x00-\x1f]*')

# events whose header list carries no channel variables (switch_channel_event_set_basic_data only)
NO_VARIABLES = {"CHANNEL_STATE", "CHANNEL_CALLSTATE"}
CDR_TIME_VARS = (  # set at CS_REPORTING, before CHANNEL_HANGUP_COMPLETE (the capture's order)
    "hangup_cause", "hangup_cause_q850", "digits_dialed", "start_stamp", "profile_start_stamp",
    "answer_stamp", "end_stamp", "start_epoch", "start_uepoch", "profile_start_epoch",
    "profile_start_uepoch", "answer_epoch", "answer_uepoch", "bridge_epoch", "bridge_uepoch",
    "last_hold_epoch", "last_hold_uepoch", "hold_accum_seconds", "hold_accum_usec", "hold_accum_ms",
    "resurrect_epoch", "resurrect_uepoch", "progress_epoch", "progress_uepoch", "progress_media_epoch",
    "progress_media_uepoch", "end_epoch", "end_uepoch", "last_app", "last_arg", "caller_id", "duration",
    "billsec", "progresssec", "answersec", "waitsec", "progress_mediasec", "flow_billsec", "mduration",
    "billmsec", "progressmsec", "answermsec", "waitmsec", "progress_mediamsec", "flow_billmsec",
    "uduration", "billusec", "progressusec", "answerusec", "waitusec", "progress_mediausec",
    "flow_billusec", "is_loopback")
Q850 = {"NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_ANSWER": 19, "CALL_REJECTED": 21,
        "UNALLOCATED_NUMBER": 1, "DESTINATION_OUT_OF_ORDER": 27, "NORMAL_UNSPECIFIED": 31,
        "ORIGINATOR_CANCEL": 487, "ALLOTTED_TIMEOUT": 602, "MANAGER_REQUEST": 503}


def load_blocks(path=CAPTURE) -> list:
    """(direction, bytes) of every block of a transcript (*.txt format of the captures' README)."""
    text = Path(path).read_text(encoding="utf-8")
    out = []
    for m in _BLOCK.finditer(text):
        _t, direction, rest, body = m.groups()
        if "NO trailing LF" in rest:
            body = body[:-1]
        out.append((direction, body.encode("utf-8")))
    return out


def parse_headers(text: str) -> list:
    """`Name: value` lines -> [(name, url-decoded value)] in order (`_undef_` -> '')."""
    out = []
    for line in text.split("\n"):
        if not line:
            continue
        k, _, v = line.partition(": ")
        out.append((k, "" if v == "_undef_" else url_decode(v)))
    return out


def captured_events(path=CAPTURE) -> list:
    """[(header list, exact frame bytes)] of what FreeSWITCH sent, the connect reply first."""
    out = []
    for direction, data in load_blocks(path):
        if direction != "FS->APP":
            continue
        head, _, rest = data.partition(b"\n\n")
        if head.startswith(b"Event-Name: CHANNEL_DATA"):
            out.append((parse_headers(head.decode()), data))
        elif b"Content-Type: text/event-plain" in head and not re.search(rb"^Content-Length: ", rest, re.M):
            out.append((parse_headers(rest.decode().rstrip("\n")), data))
    return out


_PLAIN_CACHE: dict = {}
_JSON_CACHE: dict = {}


def _enc_plain(v: str) -> str:
    out = _PLAIN_CACHE.get(v)
    if out is None:
        out = "_undef_" if v == "" else v if _SAFE_PLAIN.fullmatch(v) else url_encode(v)
        if len(_PLAIN_CACHE) > 20000:
            _PLAIN_CACHE.clear()
        _PLAIN_CACHE[v] = out
    return out


def _enc_json(v: str) -> str:
    out = _JSON_CACHE.get(v)
    if out is None:
        out = v if _SAFE_JSON.fullmatch(v) and v.isascii() else json.dumps(v, ensure_ascii=False)[1:-1]
        if len(_JSON_CACHE) > 20000:
            _JSON_CACHE.clear()
        _JSON_CACHE[v] = out
    return out


ENCODERS = {"plain": _enc_plain, "json": _enc_json}
CONTENT_TYPES = {"plain": "text/event-plain", "json": "text/event-json"}


class Template:
    """A header list with slots, pre-serialized per format: a %-format string with one `%s` per
    slot occurrence, the distinct slot names, and which distinct value fills each `%s`."""

    __slots__ = ("parts",)

    def __init__(self, headers: list, framed: bool = True):
        names: list = []
        tokens: dict = {}
        ev = Event()
        for k, v in headers:
            if isinstance(v, Slot):
                if v.name not in tokens:
                    tokens[v.name] = len(names)
                    names.append(v.name)
                v = "LEANSLOT%dX" % tokens[v.name]
            ev.add(k, v)
        self.parts = {}
        fmts = ("plain", "json") if framed else ("plain",)
        for fmt in fmts:
            text = ev.serialize_json() if fmt == "json" else ev.serialize_plain()
            pieces = _TOKEN.split(text)
            lits, occurrences = pieces[0::2], [int(i) for i in pieces[1::2]]
            self.parts[fmt] = ("%s".join(lit.replace("%", "%%") for lit in lits), tuple(names), occurrences)

    def render(self, fmt: str, values: dict) -> bytes:
        text, names, occurrences = self.parts[fmt]
        enc = ENCODERS[fmt]
        encoded = [enc(values[name]) for name in names]
        return (text % tuple([encoded[i] for i in occurrences])).encode("utf-8")


class Slot:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


def S(name: str) -> Slot:  # noqa: N802 - reads as a marker in the header lists below
    return Slot(name)


class Frames:
    """Builds the frames of one switch (one Core-UUID), templates cached; see the module doc."""

    def __init__(self, capture=CAPTURE):
        caps = captured_events(capture)
        self.captured = caps
        connect = caps[0][0]
        by = {}
        for headers, _data in caps[1:]:
            d = dict(headers)
            by.setdefault((d.get("Event-Name"), d.get("Application")), headers)
        ex_answer = by[("CHANNEL_EXECUTE", "answer")]
        hc = by[("CHANNEL_HANGUP_COMPLETE", None)]
        self.cap_uuid = dict(connect)["Unique-ID"]
        std_keys = ("Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname", "FreeSWITCH-IPv4",
                    "FreeSWITCH-IPv6")
        d = dict(connect)
        self.std_const = [(k, d[k]) for k in std_keys]
        # channel data block: Channel-State .. Answer-State, then the codec lines
        names = [k for k, _ in ex_answer]
        i0, i1 = names.index("Channel-State"), names.index("Answer-State")
        self.chan_head = ex_answer[i0:i1]
        self.codecs = [(k, v) for k, v in ex_answer if k.startswith(("Channel-Read-Codec", "Channel-Write-Codec"))]
        self.caller = [(k, v) for k, v in ex_answer if k.startswith("Caller-")]
        # base variables: the connect reply's, up to variable_call_uuid (the rest is the socket app's)
        cvars = [(k[9:], v) for k, v in connect if k.startswith("variable_")]
        cut = [k for k, _ in cvars].index("call_uuid") + 1
        self.base_vars = cvars[:cut]
        self.connect_head = [(k, v) for k, v in connect if not k.startswith("variable_")
                             and k not in ("Content-Type", "Reply-Text", "Socket-Mode", "Control")]
        self.cdr_const = {k[9:]: v for k, v in hc if k.startswith("variable_")}
        self._cache: dict = {}
        self._sec = None
        self._dates = ("", "")

    # -- slot values shared by every frame -------------------------------------------------------
    def dates(self, now: float) -> tuple:
        sec = int(now)
        if sec != self._sec:
            self._sec = sec
            self._dates = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec)), formatdate(sec, usegmt=True))
        return self._dates

    # -- header blocks ------------------------------------------------------------------------
    def _uuid(self, v: str):
        return S("uuid") if v == self.cap_uuid else v

    def _std(self, name: str, location: str | None = None) -> list:
        loc = CALLING_LOCATIONS[location or name]
        return ([("Event-Name", name)] + self.std_const
                + [("Event-Date-Local", S("date_local")), ("Event-Date-GMT", S("date_gmt")),
                   ("Event-Date-Timestamp", S("date_ts")), ("Event-Calling-File", loc[0]),
                   ("Event-Calling-Function", loc[1]), ("Event-Calling-Line-Number", loc[2]),
                   ("Event-Sequence", S("seq"))])

    def _caller(self, prefix: str = "Caller-") -> list:
        out = []
        for k, v in self.caller:
            tail = k[len("Caller-"):]
            if tail == "Unique-ID":
                v = S("uuid")
            elif tail == "Destination-Number":
                v = S("dest")
            elif tail in ("Profile-Created-Time", "Channel-Created-Time"):
                v = S("created_us")
            elif tail == "Channel-Answered-Time":
                v = S("answered_us")
            elif tail == "Channel-Hangup-Time":
                v = S("hangup_us")
            out.append((prefix + tail, v))
        return out

    def _chan(self, state: tuple) -> list:
        running, callstate, number, answer_state = state
        fixed = {"Channel-State": running, "Channel-Call-State": callstate, "Channel-State-Number": number}
        out = [(k, fixed.get(k, self._uuid(v))) for k, v in self.chan_head]
        out.append(("Answer-State", answer_state))
        if answer_state == "hangup":
            out.append(("Hangup-Cause", S("cause")))
        return out + self.codecs + self._caller()

    def _vars(self, layout: tuple) -> list:
        return ([("variable_" + k, self._uuid(v)) for k, v in self.base_vars]
                + [("variable_" + k, S("v:" + k)) for k in layout])

    # -- frames ---------------------------------------------------------------------------------
    def connect_reply(self, values: dict, layout: tuple) -> bytes:
        key = ("CONNECT", layout)
        tpl = self._cache.get(key)
        if tpl is None:
            head = []
            for k, v in self.connect_head:
                if k in ("Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp", "Event-Sequence"):
                    v = S({"Event-Date-Local": "date_local", "Event-Date-GMT": "date_gmt",
                           "Event-Date-Timestamp": "date_ts", "Event-Sequence": "seq"}[k])
                elif k in ("Channel-Destination-Number",):
                    v = S("dest")
                elif k in ("Channel-Profile-Created-Time", "Channel-Channel-Created-Time"):
                    v = S("created_us")
                elif k in ("Channel-Unique-ID",):
                    v = S("uuid")
                elif k.startswith("Caller-"):
                    continue
                else:
                    v = self._uuid(v)
                head.append((k, v))
            headers = head + self._caller() + self._vars(layout) + [
                ("Content-Type", "command/reply"), ("Reply-Text", "+OK\n"), ("Socket-Mode", "async"),
                ("Control", "full")]
            tpl = self._cache[key] = Template(headers, framed=False)
        return tpl.render("plain", values)

    def event(self, fmt: str, name: str, state: tuple, layout: tuple, tail: tuple = (),
              location: str | None = None, pre: tuple = (), values: dict | None = None) -> bytes:
        """One framed event. `state` = (Channel-State, Channel-Call-State, number, Answer-State);
        `layout` = names of the call's own variables in list order; `tail` = header names after the
        variables whose values are slots of the same name; `pre` = (name, slot) headers right after
        the standard block (CALLSTATE's Original-Channel-Call-State, HANGUP_COMPLETE's cause)."""
        key = (name, location, state, layout, tail, pre)
        tpl = self._cache.get(key)
        if tpl is None:
            headers = self._std(name, location) + [(k, S(s)) for k, s in pre] + self._chan(state)
            if name not in NO_VARIABLES:
                headers += self._vars(layout)
            headers += [(k, S(k)) for k in tail]
            tpl = self._cache[key] = Template(headers)
        payload = tpl.render(fmt, values)
        return b"Content-Length: %d\nContent-Type: %s\n\n" % (len(payload), CONTENT_TYPES[fmt].encode()) + payload
