"""tests/sip_phone.py on its own: a scripted switch (a UDP socket sending hand-written requests)
checks what the phone answers, its retransmissions, its RTP and its BYE, and the G.711 codec; no
FreeSWITCH needed (tests/test_scenario_dial_user.py rings it from a real one)."""
import struct
import uuid

import gevent
import numpy as np
import pytest
from gevent import socket

from sip_phone import SipMessage, SipPhone, tag_of, ulaw_decode, ulaw_encode
from stream_scenarios import tone, windows_with

OFFER = ("v=0\r\no=FreeSWITCH 1 2 IN IP4 127.0.0.1\r\ns=FreeSWITCH\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio {port} RTP/AVP 9 0 8 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n"
         "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n")


class Switch:
    """The calling side: sends requests from one UDP port (its Via names another, as a NATed
    switch's would: the answers must come back to where the requests came from)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.call_id, self.tag = str(uuid.uuid4()), uuid.uuid4().hex[:8]
        self.to_tag = ""

    def request(self, phone, method, cseq, body=b"", branch=None, cseq_method=None, content_type="application/sdp"):
        to = f"<{phone.uri}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        headers = [("Via", f"SIP/2.0/UDP 127.0.0.1:9;rport;branch={branch or 'z9hG4bK' + uuid.uuid4().hex}"),
                   ("Max-Forwards", "70"), ("From", f"<sip:15550001111@127.0.0.1>;tag={self.tag}"), ("To", to),
                   ("Call-ID", self.call_id), ("CSeq", f"{cseq} {cseq_method or method}"),
                   ("Contact", f"<sip:mod_sofia@127.0.0.1:{self.port}>"), ("X-VH-a", "1")]
        if body:
            headers.append(("Content-Type", content_type))
        message = SipMessage(f"{method} {phone.uri} SIP/2.0", headers, body)
        self.sock.sendto(message.to_bytes(), ("127.0.0.1", phone.port))
        return message

    def invite(self, phone, cseq=1, branch="z9hG4bKinvite1"):
        return self.request(phone, "INVITE", cseq, OFFER.format(port=self.rtp.getsockname()[1]).encode(), branch)

    def receive(self, timeout=3.0) -> tuple:
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(65535)
        return SipMessage.parse(data), data

    def until(self, status, timeout=3.0):
        """The next response with this status (skipping others)."""
        while True:
            message, data = self.receive(timeout)
            if not message.is_request and message.status == status:
                return message, data

    def close(self):
        self.sock.close()
        self.rtp.close()


@pytest.fixture
def switch():
    s = Switch()
    yield s
    s.close()


def test_the_phone_answers_an_invite_plays_its_tone_and_hears_the_switch(switch):
    with SipPhone(answer="answer", tone_hz=700) as phone:
        switch.invite(phone)
        trying, _ = switch.receive()
        ringing, _ = switch.receive()
        ok, ok_bytes = switch.receive()
        assert (trying.status, ringing.status, ok.status) == (100, 180, 200)
        # the answers came back to the port the requests were sent from; the top Via says so
        via = ok.get("Via")
        assert f"rport={switch.port}" in via and "received=127.0.0.1" in via and "branch=z9hG4bKinvite1" in via
        assert tag_of(trying.get("To")) == "" and tag_of(ringing.get("To")) == tag_of(ok.get("To")) != ""
        assert b"m=audio" in ok.body and b"RTP/AVP 0" in ok.body and b"PCMU/8000" in ok.body
        switch.to_tag = tag_of(ok.get("To"))
        call = phone.wait_call(1)
        assert call.invite.uri == phone.uri and call.header("X-VH-a") == "1"

        # no ACK yet: the phone sends its 200 again (T1 later), the same bytes
        again, again_bytes = switch.until(200)
        assert again_bytes == ok_bytes
        # a retransmitted INVITE gets the same 200 again, and no second call
        switch.invite(phone)
        _, retransmitted = switch.until(200)
        assert retransmitted == ok_bytes and len(phone.calls) == 1
        switch.request(phone, "ACK", 1)
        phone.wait(lambda: call.acked.is_set(), 2, "the ACK")

        # its RTP: PCMU packets of 20 ms holding its tone
        switch.rtp.settimeout(2)
        packets = [switch.rtp.recv(2048) for _ in range(50)]
        assert all(p[1] & 0x7F == 0 and len(p) == 12 + 160 for p in packets)
        assert windows_with(ulaw_decode(b"".join(p[12:] for p in packets)), 700) >= 9
        # what the switch sends it, it hears
        phone_rtp = ("127.0.0.1", call.rtp_port)
        audio = ulaw_encode(tone(300, 1.0))
        for n in range(50):
            switch.rtp.sendto(struct.pack("!BBHII", 0x80, 0, n, n * 160, 7) + audio[n * 160:(n + 1) * 160], phone_rtp)
        phone.wait(lambda: call.heard_seconds() >= 1.0, 3, "1 s of RTP")
        assert windows_with(call.heard(), 300) >= 9

        # OPTIONS and a re-INVITE in the dialog: 200 each, the re-INVITE with the same SDP
        switch.request(phone, "OPTIONS", 2)
        options, _ = switch.until(200)
        assert options.cseq == (2, "OPTIONS") and "INVITE" in options.get("Allow")
        switch.invite(phone, cseq=3, branch="z9hG4bKreinvite")
        reinvite, _ = switch.until(200)
        assert reinvite.cseq == (3, "INVITE") and reinvite.body == ok.body
        switch.request(phone, "ACK", 3)

        # the switch hangs up: 200, and again for the BYE's retransmission
        switch.request(phone, "BYE", 4, branch="z9hG4bKbye")
        bye_ok, bye_ok_bytes = switch.until(200)
        assert bye_ok.cseq == (4, "BYE")
        phone.wait(lambda: call.ended.is_set(), 2, "the call's end")
        assert call.state == "ended" and call.ended_by == "remote"
        switch.request(phone, "BYE", 4, branch="z9hG4bKbye")
        assert switch.until(200)[1] == bye_ok_bytes


def test_a_ringing_phone_is_cancelled_and_a_busy_one_refuses(switch):
    with SipPhone(answer="never") as phone:
        switch.invite(phone)
        assert [switch.receive()[0].status for _ in range(2)] == [100, 180]
        switch.invite(phone)                        # retransmitted while ringing: 180 again
        assert switch.receive()[0].status == 180
        switch.request(phone, "CANCEL", 1, branch="z9hG4bKinvite1")
        cancelled, _ = switch.until(200)
        terminated, _ = switch.until(487)
        assert cancelled.cseq == (1, "CANCEL") and terminated.cseq == (1, "INVITE")
        call = phone.wait_call(1)
        assert call.state == "cancelled" and call.requests == ["INVITE", "INVITE", "CANCEL"]

    other = Switch()
    try:
        with SipPhone(answer="busy") as phone:
            other.invite(phone)
            assert [other.receive()[0].status for _ in range(2)] == [100, 486]
            assert phone.wait_call(1).state == "refused"
    finally:
        other.close()


def test_the_phone_hangs_up_with_a_bye_it_resends_until_answered(switch):
    with SipPhone(answer="answer", answer_after=0.2) as phone:
        switch.invite(phone)
        ok, _ = switch.until(200)
        switch.to_tag = tag_of(ok.get("To"))
        switch.request(phone, "ACK", 1)
        call = phone.wait_call(1)
        phone.wait(lambda: call.acked.is_set(), 2, "the ACK")
        hanging_up = gevent.spawn(phone.hang_up, call)
        first, _ = switch.receive()
        second, data = switch.receive()              # not answered: sent again
        assert first.method == second.method == "BYE" and first.cseq == second.cseq
        # an in-dialog request: to the Contact the INVITE gave, the dialog's tags swapped
        assert second.uri == f"sip:mod_sofia@127.0.0.1:{switch.port}"
        assert tag_of(second.get("From")) == switch.to_tag and tag_of(second.get("To")) == switch.tag
        reply = [("Via", second.get("Via")), ("From", second.get("From")), ("To", second.get("To")),
                 ("Call-ID", second.call_id), ("CSeq", second.get("CSeq"))]
        switch.sock.sendto(SipMessage("SIP/2.0 200 OK", reply).to_bytes(), ("127.0.0.1", phone.port))
        answer = hanging_up.get(timeout=3)
        assert answer.status == 200 and call.ended_by == "phone" and call.state == "ended"


def test_mu_law_matches_g711():
    every_code = bytes(range(256))
    decoded = ulaw_decode(every_code)
    assert decoded[0x00] == -32124 and decoded[0x80] == 32124 and decoded[0xFF] == 0 and decoded[0x7F] == 0
    assert np.all(np.diff(decoded[:0x80].astype(int)) > 0)          # negative codes, rising
    # every code but the negative zero (0x7F) comes back from its own value
    assert ulaw_encode(decoded)[:0x7F] + ulaw_encode(decoded)[0x80:] == every_code[:0x7F] + every_code[0x80:]
    audioop = pytest.importorskip("audioop")                       # stdlib until Python 3.13
    assert audioop.ulaw2lin(every_code, 2) == decoded.astype("<i2").tobytes()
