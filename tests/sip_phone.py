"""A small SIP phone for the tests: a user agent server on a free UDP port of 127.0.0.1 that a real
FreeSWITCH can ring (`sofia/internal/sip:alice@127.0.0.1:PORT`), in gevent greenlets.

    with SipPhone(answer="answer", tone_hz=700) as phone:
        ...dial phone.uri...
        call = phone.wait_call(10)            # a Call: its INVITE (headers, Request-URI, From, To)
        phone.wait(lambda: call.answered, 10)
        call.heard()                          # what it received, decoded to 16-bit PCM (8 kHz)
        phone.hang_up(call)                   # the callee hangs up (BYE)

What a call gets is the phone's `answer` when the INVITE arrives: `"answer"` (100 Trying, 180
Ringing, then after `answer_after` seconds 200 OK with an SDP offering PCMU/8000 on its own RTP
port), `"busy"` (100, then 486 Busy Here) or `"never"` (100, 180, then nothing until a CANCEL, which
it answers 200 and the INVITE 487). While answered it sends RTP: PCMU, one 20 ms packet per 20 ms
of real time, a sine of `tone_hz` (silence when None), and records the PCMU it receives.

With `early_media=True` an answering phone sends 183 Session Progress with its SDP instead of 180
(RTP flows both ways from then on, `call.early_at` is its time) and its 200 OK `answer_after`
seconds later. It offers telephone-event (RFC 4733, the payload type of the INVITE's offer) as well
as PCMU, and keeps each telephone event it receives, once, and each digit sent in a SIP INFO
(dtmf-relay): `call.dtmf` lists `Dtmf(digit, early)`, `early` when it came before the 200 OK.

It answers ACK, BYE (200), CANCEL (200, and 487 to a ringing INVITE), a re-INVITE (200 with the
same SDP), OPTIONS and INFO (200), anything else 501. A retransmitted request gets the response
already sent for it again (nothing else happens twice); a 200 to an INVITE is resent until its ACK
comes (RFC 3261 13.3.1.4); every reply goes to the address the request came from (what rport asks).
Its own BYE is resent until answered. `stop()` hangs up what is still up.

What it does not do: authentication, TCP or TLS, SRTP, codecs other than PCMU, sending DTMF,
reliable provisional responses (100rel), forking, Record-Route (it sends in-dialog requests straight
to where the INVITE came from), nor checks any SIP syntax beyond what it reads.
"""
from __future__ import annotations

import itertools
import random
import re
import struct
import time
import uuid
from typing import NamedTuple

import gevent
import gevent.event
import numpy as np
from gevent import socket

T1, T2 = 0.5, 4.0                   # RFC 3261's retransmission timers
RATE, FRAME = 8000, 160             # PCMU: 8 kHz, 20 ms packets
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "c": "content-type"}


# -- G.711 mu-law (ITU-T G.711; the segment/bias algorithm of its reference code) -----------------

def ulaw_encode(pcm: np.ndarray) -> bytes:
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    mag = ((((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)) - 0x84
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


# -- messages -----------------------------------------------------------------------------------

class SipMessage:
    """One SIP request or response: its first line, its headers in order (names as sent), its body."""

    def __init__(self, first_line: str, headers: list, body: bytes = b""):
        self.first_line, self.headers, self.body = first_line, headers, body
        parts = first_line.split(" ", 2)
        self.is_request = not first_line.startswith("SIP/2.0")
        self.method = parts[0] if self.is_request else None
        self.uri = parts[1] if self.is_request else None
        self.status = None if self.is_request else int(parts[1])

    @classmethod
    def parse(cls, data: bytes) -> "SipMessage":
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        headers = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:            # a folded header line
                headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
            elif ":" in line:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
        message = cls(lines[0], headers)
        length = message.get("Content-Length")
        message.body = body[:int(length)] if length and length.isdigit() else body
        return message

    def all(self, name: str) -> list:
        want = name.lower()
        return [v for n, v in self.headers if COMPACT.get(n.lower(), n.lower()) == want]

    def get(self, name: str):
        values = self.all(name)
        return values[0] if values else None

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple:
        number, _, method = (self.get("CSeq") or "0 ?").partition(" ")
        return int(number), method.strip()

    def to_bytes(self) -> bytes:
        lines = [self.first_line] + [f"{n}: {v}" for n, v in self.headers if n.lower() != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def tag_of(header_value: str) -> str:
    match = re.search(r";\s*tag=([^;>\s]+)", header_value or "")
    return match.group(1) if match else ""


def _uri_in(header_value: str) -> str:
    match = re.search(r"<([^>]+)>", header_value or "")
    return match.group(1) if match else (header_value or "").split(";")[0].strip()


def _sdp_media(body: bytes):
    """(the address the SDP's audio goes to, whether it offers PCMU)."""
    text = body.decode("ascii", "replace")
    host = re.search(r"^c=IN IP4 (\S+)", text, re.M)
    media = re.search(r"^m=audio (\d+) RTP/AVP ([\d ]+)", text, re.M)
    if not host or not media:
        return None, False
    return (host.group(1), int(media.group(1))), "0" in media.group(2).split()


def _telephone_event_pt(body: bytes):
    """The payload type the SDP gives telephone-event/8000, or None."""
    match = re.search(r"^a=rtpmap:(\d+) telephone-event/8000", body.decode("ascii", "replace"), re.M | re.I)
    return int(match.group(1)) if match else None


EVENT_DIGITS = "0123456789*#ABCD"   # RFC 4733 DTMF events 0-15


class Dtmf(NamedTuple):
    digit: str
    early: bool                     # received before the phone's 200 OK


# -- calls --------------------------------------------------------------------------------------

class Call:
    """One call the phone was rung with: its INVITE, where it came from, its state and its audio."""

    def __init__(self, phone: "SipPhone", invite: SipMessage, source: tuple):
        self.phone, self.invite, self.source = phone, invite, source
        self.local_tag = uuid.uuid4().hex[:10]
        self.state = "ringing"          # ringing | answered | refused | cancelled | ended
        self.ended_by = ""              # "phone" (its BYE) or "remote" (the switch's BYE)
        self.answered_at = None         # time.monotonic() of its 200 OK
        self.early_at = None            # time.monotonic() of its 183 with SDP (early_media)
        self.dtmf: list = []            # Dtmf(digit, early) of each telephone event received
        self.te_pt = _telephone_event_pt(invite.body)
        self._last_event = None         # (RTP timestamp, event) of the last telephone event
        self.requests: list = []        # the methods of every request received in this call
        self.acked = gevent.event.Event()
        self.ended = gevent.event.Event()
        self.remote_rtp, _ = _sdp_media(invite.body)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp_port = self.rtp.getsockname()[1]
        self._chunks: list = []
        self._cseq = itertools.count(1)
        self._session_id = random.randrange(10**9)
        self._greenlets: list = []

    @property
    def answered(self) -> bool:
        """It was answered (it may have ended since)."""
        return self.answered_at is not None

    def header(self, name: str):
        """A header of the INVITE (first of that name, case-insensitive)."""
        return self.invite.get(name)

    def heard(self) -> np.ndarray:
        """The PCMU received while answered, decoded, in arrival order."""
        return ulaw_decode(b"".join(self._chunks)) if self._chunks else np.zeros(0, np.int16)

    def heard_seconds(self) -> float:
        return sum(len(c) for c in self._chunks) / RATE

    def digits(self, early=None) -> str:
        """The telephone events received (only those before, or after, the 200 OK with `early`)."""
        return "".join(d.digit for d in self.dtmf if early is None or d.early == early)

    def sdp(self) -> bytes:
        session = self._session_id
        te = self.te_pt
        payloads = "0" if te is None else f"0 {te}"
        events = "" if te is None else f"a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
        return ("v=0\r\n"
                f"o=callfork-phone {session} {session} IN IP4 127.0.0.1\r\n"
                "s=callfork test phone\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {self.rtp_port} RTP/AVP {payloads}\r\na=rtpmap:0 PCMU/8000\r\n{events}"
                "a=ptime:20\r\na=sendrecv\r\n").encode()

    # -- media ----------------------------------------------------------------------------------
    def start_media(self):
        if not self._greenlets:
            self._greenlets += [gevent.spawn(self._send_rtp), gevent.spawn(self._receive_rtp)]

    def stop_media(self):
        gevent.killall(self._greenlets)
        self._greenlets = []
        self.rtp.close()

    def _send_rtp(self):
        tone_hz = self.phone.tone_hz
        seq, stamp, ssrc = random.randrange(1 << 16), random.randrange(1 << 32), random.randrange(1 << 32)
        due = time.monotonic()
        for n in itertools.count():
            t = (np.arange(FRAME) + n * FRAME) / RATE
            samples = (8000 * np.sin(2 * np.pi * tone_hz * t)) if tone_hz else np.zeros(FRAME)
            header = struct.pack("!BBHII", 0x80, 0x80 if n == 0 else 0, (seq + n) & 0xFFFF,
                                 (stamp + n * FRAME) & 0xFFFFFFFF, ssrc)
            if self.remote_rtp:
                self.rtp.sendto(header + ulaw_encode(samples.astype(np.int16)), self.remote_rtp)
            due += FRAME / RATE
            late = time.monotonic() - due
            if late > 0.2:              # a stalled machine: go on from now, not in a burst
                due = time.monotonic()
            gevent.sleep(max(0.0, due - time.monotonic()))   # pacing: one RTP packet per 20 ms

    def _receive_rtp(self):
        while True:
            data = self.rtp.recv(2048)
            if len(data) < 12 or data[1] & 0x7F not in (0, self.te_pt):   # PCMU, telephone-event
                continue
            offset = 12 + 4 * (data[0] & 0x0F)
            if data[0] & 0x10 and len(data) >= offset + 4:   # a header extension
                offset += 4 + 4 * struct.unpack("!H", data[offset + 2:offset + 4])[0]
            if data[1] & 0x7F == 0:
                if self.answered:
                    self._chunks.append(data[offset:])
                continue
            # RFC 4733: an event's first packet has the marker bit; its packets share its RTP
            # timestamp (its end is sent three times). Two events may share a timestamp when the
            # sender wrote no audio between them: a new one is its marker or another (timestamp, event).
            if len(data) < offset + 4 or data[offset] >= len(EVENT_DIGITS):
                continue
            event = (struct.unpack("!I", data[4:8])[0], data[offset])
            if data[1] & 0x80 or event != self._last_event:
                self._last_event = event
                self.dtmf.append(Dtmf(EVENT_DIGITS[data[offset]], not self.answered))
                self.phone._changed.set()

    def info_dtmf(self, request) -> None:
        """A digit sent as SIP INFO (application/dtmf-relay `Signal=5`, or application/dtmf `5`):
        FreeSWITCH sends one so when it has not yet taken the telephone-event payload of an early
        media answer; kept with the telephone events."""
        kind = (request.get("Content-Type") or "").split(";")[0].strip().lower()
        body = request.body.decode("latin-1", "replace")
        if kind == "application/dtmf-relay":
            fields = dict(line.split("=", 1) for line in body.splitlines() if "=" in line)
            digit = fields.get("Signal", "").strip()
        elif kind == "application/dtmf":
            digit = body.strip()
        else:
            return
        if len(digit) == 1 and digit in "0123456789*#ABCD":
            self.dtmf.append(Dtmf(digit, not self.answered))
            self.phone._changed.set()

    # -- requests the phone sends -----------------------------------------------------------------
    def request(self, method: str) -> SipMessage:
        """An in-dialog request from the phone (the callee) to the switch."""
        invite = self.invite
        via = f"SIP/2.0/UDP 127.0.0.1:{self.phone.port};rport;branch=z9hG4bK{uuid.uuid4().hex[:16]}"
        headers = [("Via", via), ("Max-Forwards", "70"),
                   ("From", f"{invite.get('To')};tag={self.local_tag}"), ("To", invite.get("From")),
                   ("Call-ID", invite.call_id), ("CSeq", f"{next(self._cseq)} {method}"),
                   ("Contact", f"<{self.phone.uri}>")]
        return SipMessage(f"{method} {_uri_in(invite.get('Contact')) or _uri_in(invite.get('From'))} SIP/2.0",
                          headers)


class SipPhone:
    """The phone: see the module's docstring. `calls` are in the order their INVITEs arrived."""

    def __init__(self, *, answer: str = "answer", answer_after: float = 0.0, tone_hz: float | None = 700.0,
                 user: str = "alice", early_media: bool = False):
        if answer not in ("answer", "busy", "never"):
            raise ValueError(f"answer must be answer, busy or never, not {answer!r}")
        self.answer, self.answer_after, self.tone_hz, self.user = answer, answer_after, tone_hz, user
        self.early_media = early_media
        self.calls: list = []
        self._by_id: dict = {}
        self._responses: dict = {}      # (Call-ID, CSeq, method) -> the last response sent for it
        self._answered: dict = {}       # (Call-ID, CSeq, method) of our requests -> their final response
        self._changed = gevent.event.Event()
        self._greenlets: list = []
        self.sock = None
        self.port = 0

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.port}"

    def start(self) -> "SipPhone":
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._greenlets.append(gevent.spawn(self._serve))
        return self

    def stop(self):
        for call in list(self.calls):
            if call.state == "answered":
                try:
                    self.hang_up(call, timeout=3)
                except AssertionError:
                    pass
            elif call.state == "ringing":
                self._final(call, 480, "Temporarily Unavailable", "refused")
        gevent.killall(self._greenlets)
        for call in self.calls:
            call.stop_media()
        self.sock.close()

    def __enter__(self) -> "SipPhone":
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- waiting --------------------------------------------------------------------------------
    def wait(self, predicate, timeout: float, what: str = "condition"):
        """predicate()'s first truthy value, re-checked whenever a SIP message or RTP arrives."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the phone: {what} not met within {timeout}s")
            self._changed.clear()
            self._changed.wait(min(left, 0.05))     # RTP arrives unannounced: look again soon

    def wait_call(self, timeout: float = 10.0) -> Call:
        return self.wait(lambda: self.calls and self.calls[0], timeout, "an INVITE")

    def hang_up(self, call: Call, timeout: float = 5.0):
        """The callee hangs up: BYE, resent until the switch answers it; returns that answer."""
        if call.state != "answered":
            raise ValueError(f"the call is {call.state}, not answered")
        bye = call.request("BYE")
        call.state, call.ended_by = "ended", "phone"
        call.stop_media()
        key = (call.invite.call_id, bye.cseq[0], "BYE")
        self._send_until(bye.to_bytes(), call.source, lambda: key in self._answered, timeout)
        call.ended.set()
        return self._answered.get(key)

    # -- the SIP side ---------------------------------------------------------------------------
    def _serve(self):
        while True:
            data, source = self.sock.recvfrom(65535)
            if not data.strip():
                continue                            # a keep-alive
            try:
                message = SipMessage.parse(data)
            except (ValueError, IndexError):
                continue                            # not SIP this phone can read
            if message.is_request:
                self._on_request(message, source)
            elif message.status >= 200:
                number, method = message.cseq
                self._answered[(message.call_id, number, method)] = message
            self._changed.set()

    def _send(self, data: bytes, to: tuple):
        self.sock.sendto(data, to)

    def _send_until(self, data: bytes, to: tuple, done, timeout: float):
        """Send `data`, again after T1, 2*T1 ... (at most T2 apart) until done() or `timeout`."""
        interval, deadline = T1, time.monotonic() + timeout
        while not done():
            if time.monotonic() >= deadline:
                raise AssertionError("the phone: no answer to its request")
            self._send(data, to)
            try:
                self.wait(done, min(interval, max(0.0, deadline - time.monotonic())))
            except AssertionError:
                interval = min(2 * interval, T2)

    def _respond(self, request: SipMessage, source: tuple, status: int, reason: str, call: Call | None = None,
                 body: bytes = b""):
        """Answer `request` where it came from, and remember the answer for its retransmissions."""
        headers = []
        for index, value in enumerate(request.all("Via")):
            if index == 0:                          # RFC 3261 18.2.2 and RFC 3581: the top Via
                value = re.sub(r";rport(?==|;|$)(=\d*)?", f";rport={source[1]}", value)
                value += f";received={source[0]}"
            headers.append(("Via", value))
        to = request.get("To")
        if call is not None and status > 100 and not tag_of(to):
            to = f"{to};tag={call.local_tag}"
        headers += [("From", request.get("From")), ("To", to), ("Call-ID", request.call_id),
                    ("CSeq", request.get("CSeq"))]
        if call is not None and status < 300 and request.method in ("INVITE", "OPTIONS"):
            headers.append(("Contact", f"<{self.uri}>"))
        if request.method == "OPTIONS" or status == 501:
            headers.append(("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"))
        if body:
            headers.append(("Content-Type", "application/sdp"))
        data = SipMessage(f"SIP/2.0 {status} {reason}", headers, body).to_bytes()
        self._responses[(request.call_id, request.cseq[0], request.method)] = data
        self._send(data, source)
        return data

    def _on_request(self, request: SipMessage, source: tuple):
        call = self._by_id.get(request.call_id)
        if call is not None:
            call.requests.append(request.method)
        key = (request.call_id, request.cseq[0], request.method)
        if key in self._responses and request.method != "ACK":
            self._send(self._responses[key], source)      # a retransmission: the same answer again
            return
        method = request.method
        if method == "INVITE" and call is None:
            self._new_call(request, source)
        elif method == "INVITE":                                # a re-INVITE in the dialog
            remote, _ = _sdp_media(request.body)
            call.remote_rtp = remote or call.remote_rtp
            data = self._respond(request, source, 200, "OK", call, call.sdp())
            self._resend_until_acked(call, data, source)
        elif method == "ACK":
            if call is not None:
                call.acked.set()
        elif call is None and method in ("BYE", "CANCEL", "INFO"):
            self._respond(request, source, 481, "Call/Transaction Does Not Exist")
        elif method == "CANCEL":
            self._respond(request, source, 200, "OK", call)
            if call.state == "ringing":
                self._final(call, 487, "Request Terminated", "cancelled")
        elif method == "BYE":
            self._respond(request, source, 200, "OK", call)
            if call.state != "ended":
                call.state, call.ended_by = "ended", "remote"
                call.stop_media()
            call.ended.set()
        elif method in ("OPTIONS", "INFO"):
            if method == "INFO" and call is not None:
                call.info_dtmf(request)
            self._respond(request, source, 200, "OK", call)
        else:
            self._respond(request, source, 501, "Not Implemented", call)

    def _new_call(self, invite: SipMessage, source: tuple):
        call = Call(self, invite, source)
        call.requests.append("INVITE")
        self.calls.append(call)
        self._by_id[invite.call_id] = call
        self._respond(invite, source, 100, "Trying")
        if self.answer == "busy":
            self._final(call, 486, "Busy Here", "refused")
            return
        _, pcmu = _sdp_media(invite.body)
        if not pcmu:
            self._final(call, 488, "Not Acceptable Here", "refused")
            return
        if self.early_media and self.answer == "answer":
            self._respond(invite, source, 183, "Session Progress", call, call.sdp())
            call.early_at = time.monotonic()
            call.start_media()
        else:
            self._respond(invite, source, 180, "Ringing", call)
        if self.answer == "answer":
            self._greenlets.append(gevent.spawn_later(self.answer_after, self._answer, call))

    def _answer(self, call: Call):
        if call.state != "ringing":
            return
        call.state, call.answered_at = "answered", time.monotonic()
        data = self._respond(call.invite, call.source, 200, "OK", call, call.sdp())
        call.start_media()
        self._resend_until_acked(call, data, call.source)
        self._changed.set()

    def _final(self, call: Call, status: int, reason: str, state: str):
        call.state = state
        if call.early_at is not None:
            call.stop_media()
        self._respond(call.invite, call.source, status, reason, call)
        call.ended.set()
        self._changed.set()

    def _resend_until_acked(self, call: Call, data: bytes, to: tuple):
        """A 2xx to an INVITE is the UAS core's to resend: T1, doubling up to T2, for 64*T1."""
        call.acked.clear()

        def resend():
            interval, deadline = T1, time.monotonic() + 64 * T1
            while not call.acked.wait(interval) and time.monotonic() < deadline and call.state == "answered":
                self._send(data, to)
                interval = min(2 * interval, T2)
        self._greenlets.append(gevent.spawn(resend))
