"""What FreeSWITCH 1.10.12 does while `fsctl pause inbound` holds (what `callfork drain` asks of it),
captured on a real FreeSWITCH and replayed on the simulator.

`fsctl pause inbound` sets the core flag SCF_NO_NEW_INBOUND_SESSIONS (switch_core.c
switch_core_session_ctl SCSC_PAUSE_INBOUND); `fsctl resume inbound` clears it, and `fsctl
pause_check inbound` answers `true` or `false` (no newline). While it is set,
switch_core_session_request refuses every new inbound session, and mod_sofia answers every
out-of-dialog INVITE, OPTIONS, REGISTER, NOTIFY and INFO `503 Maximum Calls In Progress` with
`Retry-After: 300` (sofia.c sofia_event_callback, before any authentication), so a SIP proxy's
OPTIONS health checks see the node refuse. mod_loopback's -b leg is an inbound session: a loopback
originate (or bridge) does not fail at once, its -a leg stays in CS_INIT (mod_loopback's
channel_on_init gives up without hanging it up) until the originate times out with NO_ANSWER
(then it is gone). Channels that already exist go on.

The run: a parked loopback channel first (it must live through the pause), then `fsctl pause
inbound` and the checks (`pause_check` of inbound, outbound and all), a SIP OPTIONS and a SIP INVITE
sent from a UDP socket of this process to the switch's `internal` profile (127.0.0.1:5060: status
line and the Retry-After header of the final answer; the INVITE's is ACKed), an originate through
mod_loopback and one through sofia back to the switch itself (each with originate_timeout=3: its
reply, how many seconds it took, whether its channel existed 1 s in and 0.5 s after the reply), whether the parked channel still exists, a second `fsctl pause inbound`, then
`fsctl resume inbound`, the checks again, an OPTIONS and a loopback originate that now work. The
switch is resumed in a `finally` whatever happens. Each step is `{"step", "command" or "sip",
"reply"}`.

    flock /tmp/callfork-fs.lock python tests/pause_inbound_truth.py capture --esl 127.0.0.1:8021:ClueCon \
        --out tests/fixtures/fs-captures/pause-inbound.json
    python tests/pause_inbound_truth.py sim          # the ESL steps on the simulator, differences printed

The capture pauses the whole switch for about a second: run it only under the shared lock
(/tmp/callfork-fs.lock). tests/test_sim_pause_inbound_truth.py replays the fixture.
"""
from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey
    monkey.patch_all()

import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid as uuidlib  # noqa: E402

import gevent  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import truth_capture  # noqa: E402
from truth_capture import compare_cases, esl_connect  # noqa: E402

SIP_TARGET = ("127.0.0.1", 5060)     # the freeswitch-test configuration's internal profile


class SipProbe:
    """Out-of-dialog SIP requests from a UDP socket of this process; `request(method)` -> the final
    answer's status line and Retry-After (a provisional 1xx is skipped; a non-2xx answer to an
    INVITE is ACKed, as RFC 3261 17.1.1.3 asks)."""

    def __init__(self, target=SIP_TARGET):
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def _message(self, method: str, call_id: str, branch: str, cseq_method: str | None = None,
                 to_tag: str = "") -> bytes:
        host, port = self.target
        body = ""
        if method == "INVITE":
            body = ("v=0\r\no=probe 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                    f"m=audio {self.port + 2} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
        lines = [f"{method} sip:callfork1000@{host}:{port} SIP/2.0",
                 f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch={branch}",
                 "Max-Forwards: 70",
                 f"From: <sip:probe@127.0.0.1:{self.port}>;tag=probe{call_id[:8]}",
                 f"To: <sip:callfork1000@{host}:{port}>" + (f";tag={to_tag}" if to_tag else ""),
                 f"Call-ID: {call_id}",
                 f"CSeq: 1 {cseq_method or method}",
                 f"Contact: <sip:probe@127.0.0.1:{self.port}>",
                 "User-Agent: callfork-pause-probe"]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def request(self, method: str, timeout: float = 5.0) -> dict:
        call_id = uuidlib.uuid4().hex
        branch = "z9hG4bK" + uuidlib.uuid4().hex[:16]
        self.sock.sendto(self._message(method, call_id, branch), self.target)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data, _addr = self.sock.recvfrom(65536)
            except socket.timeout:
                break
            text = data.decode("utf-8", "replace")
            head = text.split("\r\n\r\n", 1)[0].split("\r\n")
            if not head[0].startswith("SIP/2.0 ") or call_id not in text:
                continue
            code = int(head[0].split()[1])
            if code < 200:
                continue
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), value.strip())
            if method == "INVITE" and code >= 300:
                to_tag = headers.get("to", "").partition(";tag=")[2]
                self.sock.sendto(self._message("ACK", call_id, branch, "ACK", to_tag), self.target)
            return {"status": head[0], "retry_after": headers.get("retry-after")}
        return {"status": None, "retry_after": None}

    def close(self):
        self.sock.close()


def _api(esl, line: str, timeout: float = 15.0) -> str:
    """`api <line>`'s reply body; the events that come before it are kept (esl.backlog)."""
    esl.send(f"api {line}\n\n")
    while True:
        headers, body, raw = esl.frame(timeout)
        if headers.get("Content-Type") == "api/response":
            return body.decode("utf-8")
        esl.backlog.append((headers, body, raw))


def run(address, password="ClueCon", sip: bool = True) -> list[dict]:
    """The steps on the switch at `address` (`sip`: also the SIP probes, which the simulator cannot
    answer). The switch is resumed (`fsctl resume inbound`) before this returns, whatever happened."""
    esl = esl_connect(address, password)
    probe = SipProbe() if sip else None
    steps = []
    parked = str(uuidlib.uuid4())

    def api(step: str, line: str) -> str:
        reply = _api(esl, line)
        steps.append({"step": step, "command": line.replace(parked, "{P}"), "reply": reply.replace(parked, "{P}")})
        return reply

    def originate(step: str, dial: str):
        """On a connection of its own (an originate that hangs must not hold up the resume), with
        originate_timeout=3: its reply, how long it took, and meanwhile whether its channel exists."""
        uuid = str(uuidlib.uuid4())
        line = f"originate {{origination_uuid={uuid},originate_timeout=3}}{dial} &park()"
        own = esl_connect(address, password)
        started = time.monotonic()
        job = gevent.spawn(_api, own, line)
        job.join(1.0)
        exists = None if job.ready() else _api(esl, f"uuid_exists {uuid}")
        job.join(15)
        reply = job.value if job.successful() else None
        own.close()
        seconds = round(time.monotonic() - started)
        gevent.sleep(0.5)   # a measurement window: does the channel outlive its originate's reply by 0.5 s?
        left = _api(esl, f"uuid_exists {uuid}")
        steps.append({"step": step, "command": line.replace(uuid, "{U}"), "reply": reply and reply.replace(uuid, "{U}"),
                      "exists_after_1s": exists, "seconds": seconds, "exists_after_reply": left})
        if left == "true":
            _api(esl, f"uuid_kill {uuid}")

    def sip_request(step: str, method: str):
        if probe is not None:
            steps.append(dict({"step": step, "sip": method}, **probe.request(method)))

    try:
        api("an existing call", f"originate {{origination_uuid={parked}}}loopback/9999/default &park()")
        api("before", "fsctl pause_check inbound")
        api("pause", "fsctl pause inbound")
        api("paused: inbound", "fsctl pause_check inbound")
        api("paused: outbound", "fsctl pause_check outbound")
        api("paused: all", "fsctl pause_check")
        sip_request("paused: a proxy's health check", "OPTIONS")
        sip_request("paused: a new call over SIP", "INVITE")
        originate("paused: a loopback originate (its -b leg is inbound)", "loopback/9999/default")
        if probe is not None:
            originate("paused: a call over SIP to the switch itself", "sofia/internal/sip:9999@127.0.0.1:5060")
        api("paused: the existing call goes on", f"uuid_exists {parked}")
        api("pause again", "fsctl pause inbound")
        api("resume", "fsctl resume inbound")
        api("resumed: inbound", "fsctl pause_check inbound")
        sip_request("resumed: a proxy's health check", "OPTIONS")
        originate("resumed: a loopback originate", "loopback/9999/default")
        api("resume again", "fsctl resume inbound")
    finally:
        esl.close()
        if probe is not None:
            probe.close()
        last = esl_connect(address, password)   # a fresh one: `esl` may wait on a reply that hangs
        try:
            _api(last, "fsctl resume inbound")
            check = _api(last, "fsctl pause_check inbound")
            _api(last, f"uuid_kill {parked}")
        finally:
            last.close()
        assert check == "false", f"the switch is still paused: pause_check inbound = {check!r}"
    return steps


def capture(address, password: str) -> list[dict]:
    return run(address, password, sip=True)


def replay(sim) -> list[dict]:
    """The ESL steps on a running simulator (it speaks no SIP: the SIP steps are left out)."""
    return run(sim.esl_address, sip=False)


def esl_steps(steps: list[dict]) -> list[dict]:
    """The steps the simulator can run: all but the SIP ones (and the originate over sofia)."""
    return [s for s in steps if "sip" not in s and "sofia/" not in s.get("command", "")]


def compare(expected: list, got: list, label: str = "simulator") -> list:
    def differences(want, have):
        problems = []
        for key in ("reply", "exists_after_1s", "seconds", "exists_after_reply"):
            a, b = want.get(key), have.get(key)
            if key == "seconds" and a is not None and b is not None and abs(a - b) <= 1:
                continue
            if a != b:
                problems.append(f"{want['step']}: {key}: FreeSWITCH {a!r}, {label} {b!r}")
        return problems
    return compare_cases(esl_steps(expected), got, lambda s: (s["step"], s.get("command")), differences)


def main(argv=None) -> int:
    return truth_capture.main(argv, doc=__doc__, fixture="pause-inbound.json", capture=capture,
                              replay=replay, compare=compare, doc_paragraphs=3)


if __name__ == "__main__":
    sys.exit(main())
