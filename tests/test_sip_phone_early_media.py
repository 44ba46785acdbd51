"""tests/sip_phone.py's early media and telephone events on their own, against the scripted switch
of tests/test_sip_phone.py: 183 with an SDP offering the INVITE's telephone-event payload type,
RTP from the 183 on, each RFC 4733 event kept once (two events may share a timestamp) and a digit
in a SIP INFO (dtmf-relay; other INFO bodies are not digits), each marked early until the 200 OK."""
import struct

import pytest

from sip_phone import SipPhone
from test_sip_phone import Switch


@pytest.fixture
def switch():
    s = Switch()
    yield s
    s.close()


def _event(switch, call, digit_code, stamp, seq):
    """One telephone event as FreeSWITCH sends it: three packets with one timestamp, the last two ends."""
    for n, flags in enumerate((0x0A, 0x8A, 0x8A)):
        payload = struct.pack("!BBH", digit_code, flags, 160 * (n + 1))
        header = struct.pack("!BBHII", 0x80, (0x80 if n == 0 else 0) | 101, seq + n, stamp, 7)
        switch.rtp.sendto(header + payload, ("127.0.0.1", call.rtp_port))


def test_an_early_media_phone_keeps_the_digits_it_gets_before_and_after_its_answer(switch):
    with SipPhone(answer="answer", answer_after=1.0, early_media=True) as phone:
        switch.invite(phone)
        trying, _ = switch.receive()
        progress, _ = switch.receive()
        assert (trying.status, progress.status) == (100, 183)
        assert b"RTP/AVP 0 101" in progress.body and b"a=rtpmap:101 telephone-event/8000" in progress.body
        call = phone.wait_call(1)
        assert call.early_at is not None and not call.answered
        # its RTP flows from the 183 on
        switch.rtp.settimeout(2)
        assert switch.rtp.recv(2048)[1] & 0x7F == 0
        _event(switch, call, 1, 1000, 10)
        _event(switch, call, 11, 1000, 20)     # no audio written between them: the same timestamp
        phone.wait(lambda: len(call.dtmf) >= 2, 2, "two digits")
        # a digit in a SIP INFO, as FreeSWITCH sends one before it has taken the telephone-event payload
        switch.to_tag = progress.get("To").split("tag=")[1]
        switch.request(phone, "INFO", 2, b"Signal=7\r\nDuration=160\r\n", content_type="application/dtmf-relay")
        phone.wait(lambda: len(call.dtmf) >= 3, 2, "the INFO's digit")
        switch.request(phone, "INFO", 3, b"<media_control/>", content_type="application/media_control+xml")
        answered = [switch.until(200, timeout=3)[0] for _ in range(3)]
        infos = sorted(m.cseq for m in answered if m.cseq[1] == "INFO")
        assert infos == [(2, "INFO"), (3, "INFO")], [m.cseq for m in answered]
        ok = next(m for m in answered if m.cseq[1] == "INVITE")
        assert ok.cseq == (1, "INVITE") and ok.body == progress.body
        switch.to_tag = progress.get("To").split("tag=")[1]
        switch.request(phone, "ACK", 1)
        phone.wait(lambda: call.answered, 2, "the answer")
        _event(switch, call, 5, 3000, 30)
        phone.wait(lambda: len(call.dtmf) >= 4, 2, "a fourth digit")
        assert call.digits() == "1#75" and call.digits(early=True) == "1#7" and call.digits(early=False) == "5"
