"""<Conference relayDTMF="true"> end to end, on the simulator and (marked `freeswitch`) on a real
FreeSWITCH: a member with relayDTMF presses digits and the other member's phone gets them; the other
member (without it) presses digits and nobody else gets them; each member's own digitsMatch still
sees its own digits. The room's helpers are test_scenario_conference.py's.
"""
import os
from urllib.parse import unquote

import gevent

from harness import Stack, switch_modes
from sim_support import RawESL, event_headers
from stream_scenarios import rms, tone_power
from switch_sim.media import DTMF_FREQS
from test_scenario_conference import _api, _doc, _join
from waiting import wait_until


class _DigitsReceived:
    """The digits sent to a caller's phone. On a real FreeSWITCH the caller is the A leg of a
    loopback pair: digits sent out of callfork's leg arrive there as DTMF (its events, taken on a
    second event socket); the simulator plays digits sent to its callers as their tones, read back
    from what the caller heard."""

    def __init__(self, stack):
        self.stack = stack
        self.events = []
        self.esl = self.reader = None
        if stack.real_fs:
            host, port, password = os.environ["CALLFORK_FS_ESL"].split(":", 2)
            self.esl = RawESL.connect((host, int(port)))
            self.esl.frame()
            self.esl.command(f"auth {password}")
            self.esl.command("event plain DTMF")
            self.reader = gevent.spawn(self._read)

    def _read(self):
        while True:
            try:
                headers, body, _ = self.esl.next_frame(timeout=3600)
            except Exception:
                return
            if headers.get("Content-Type") == "text/event-plain":
                ev = dict(event_headers(body))
                self.events.append((unquote(ev.get("Unique-ID", "")), unquote(ev.get("DTMF-Digit", ""))))

    def press(self, call, digits):
        """The caller presses keys (on callfork's leg they arrive as the caller's digits)."""
        control = self.stack.service.control
        if self.stack.real_fs:
            assert control.api(f"uuid_send_dtmf {call.a_uuid} {digits}").startswith("+OK")
        else:
            assert control.api(f"sim_dtmf {call.uuid} {digits}").startswith("+OK")

    def of(self, call) -> str:
        if self.stack.real_fs:
            return "".join(d for uuid, d in list(self.events) if uuid == call.a_uuid)
        return _tone_digits(call.heard())

    def close(self):
        if self.reader is not None:
            self.reader.kill()
            self.esl.sock.close()


def _tone_digits(samples, win=400):
    """The DTMF digits whose two tones fill 50 ms windows of `samples`, a run of windows one digit."""
    out, last = [], None
    for i in range(0, len(samples) - win + 1, win):
        w = samples[i:i + win]
        digit = None
        if rms(w) > 300:
            for d, (low, high) in DTMF_FREQS.items():
                if tone_power(w, low) > 0.2 and tone_power(w, high) > 0.2:
                    digit = d
                    break
        if digit is not None and digit != last:
            out.append(digit)
        last = digit
    return "".join(out)


@switch_modes()
def test_relay_dtmf_sends_a_members_digits_to_the_others(real_fs):
    with Stack(real=real_fs) as stack:
        def answer(req):
            relay = req.form.get("To", "").endswith("1001")
            return _doc(stack, "keys room", stayAlone="true", relayDTMF="true" if relay else "false",
                        digitsMatch="12,9" if relay else "45")
        stack.app.document("/answer", answer)
        digits = _DigitsReceived(stack)
        try:
            other = _join(stack, 1, hangup_after=60, keep_heard=True, to="1002")
            relaying = _join(stack, 2, hangup_after=60, keep_heard=True, to="1001")

            def matched(pattern):
                return [e.form for e in stack.app.events("ConferenceDigitsMatch", path="/conf")
                        if e.form["ConferenceDigitsMatch"] == pattern]
            # the relaying member presses 12: its own document sees them, the other member gets them
            digits.press(relaying, "12")
            wait_until(lambda: matched("12"), 15, "the relaying member's digitsMatch")
            wait_until(lambda: digits.of(other) == "12", 10, "the other member got 12")
            # the member without relayDTMF presses 45: only its own document sees them
            digits.press(other, "45")
            wait_until(lambda: matched("45"), 15, "the other member's digitsMatch")
            # then 9 from the relaying member: once the other got it, 45 had time to go round
            digits.press(relaying, "9")
            wait_until(lambda: digits.of(other) == "129", 10, "the other member got 9")
            assert _api(stack, "DELETE", "/Conference/keys room/").status_code == 204
            for call in (other, relaying):
                call.wait(30)
            assert digits.of(relaying) == ""
            assert digits.of(other) == "129"
        finally:
            digits.close()
