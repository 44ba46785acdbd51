"""Kamailio with deploy/kamailio/kamailio.cfg for the tests, and the SIP pieces around it.

`Kamailio(destinations)`: a real kamailio (Debian's 5.6) on a free UDP port of 127.0.0.1, its
dispatcher list (set 1 = `destinations`, SIP URIs), ctl socket and run files in a temporary
directory, OPTIONS pings every second, `states()` the dispatcher's view of each destination; a
context manager (stopped after). `FakeNode`: a SIP node on a free UDP port
that answers the proxy's pings as FreeSWITCH does (`ping = "ok"`: 200; `"draining"`: the 503 a paused
FreeSWITCH answers; `"down"`: nothing) and INVITEs with 486 (or 503 with `refuse_invites`),
keeping the Call-IDs it got. `send_invite(target, call_id)`: an INVITE from a UDP socket -> the
final answer's status code (an OPTIONS with method="OPTIONS").
"""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import uuid as uuidlib
from pathlib import Path

import gevent

from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
DRAINING_PING_ANSWER = "503 Maximum Calls In Progress"   # tests/fixtures/fs-captures/pause-inbound.json


def kamailio_binary() -> str:
    return shutil.which("kamailio") or "/usr/sbin/kamailio"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _headers(text: str) -> tuple[str, dict]:
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return head[0], headers


def _reply(request: str, status: str, extra: str = "") -> bytes:
    _first, h = _headers(request)
    to = h.get("to", "")
    if ";tag=" not in to:
        to += ";tag=" + uuidlib.uuid4().hex[:8]
    lines = [f"SIP/2.0 {status}", f"Via: {h.get('via', '')}", f"From: {h.get('from', '')}", f"To: {to}",
             f"Call-ID: {h.get('call-id', '')}", f"CSeq: {h.get('cseq', '')}"] + ([extra] if extra else [])
    return ("\r\n".join(lines + ["Content-Length: 0"]) + "\r\n\r\n").encode()


class FakeNode:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.uri = f"sip:127.0.0.1:{self.port}"
        self.ping = "ok"
        self.refuse_invites = False
        self.pings = []          # (mode when answered, or "down")
        self.invites = []        # Call-IDs, in arrival order
        self._loop = gevent.spawn(self._run)

    def _run(self):
        while True:
            data, addr = self.sock.recvfrom(65536)
            text = data.decode("utf-8", "replace")
            first, h = _headers(text)
            method = first.split(" ", 1)[0]
            if method == "OPTIONS":
                self.pings.append(self.ping)
                if self.ping == "ok":
                    self.sock.sendto(_reply(text, "200 OK"), addr)
                elif self.ping == "draining":
                    self.sock.sendto(_reply(text, DRAINING_PING_ANSWER, "Retry-After: 300"), addr)
            elif method == "INVITE":
                self.invites.append(h.get("call-id"))
                self.sock.sendto(_reply(text, DRAINING_PING_ANSWER if self.refuse_invites else "486 Busy Here"), addr)

    def pinged_since(self, count: int, mode: str) -> bool:
        """A ping answered in `mode` came after the first `count` pings."""
        return mode in self.pings[count:]

    def close(self):
        self._loop.kill()
        self.sock.close()


def send_invite(target: tuple, call_id: str, user: str = "callfork1000", cseq: int = 1, timeout: float = 10.0,
                method: str = "INVITE") -> int:
    """An INVITE (or `method`) to `target` (a UDP socket of its own); the final answer's code (0: none
    in `timeout`). A non-2xx answer to an INVITE is ACKed."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        branch = "z9hG4bK" + uuidlib.uuid4().hex[:16]
        host, tport = target

        uri = f"sip:{user + '@' if user else ''}{host}:{tport}"

        def message(method: str, to_tag: str = "") -> bytes:
            lines = [f"{method} {uri} SIP/2.0",
                     f"Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch={branch}", "Max-Forwards: 70",
                     f"From: <sip:caller@127.0.0.1:{port}>;tag=t{cseq}", f"To: <{uri}>" + (f";tag={to_tag}" if to_tag else ""), f"Call-ID: {call_id}",
                     f"CSeq: {cseq} {method}", f"Contact: <sip:caller@127.0.0.1:{port}>", "Content-Length: 0"]
            return ("\r\n".join(lines) + "\r\n\r\n").encode()

        sock.sendto(message(method), target)
        sock.settimeout(timeout)
        while True:
            try:
                data, _addr = sock.recvfrom(65536)
            except socket.timeout:
                return 0
            first, h = _headers(data.decode("utf-8", "replace"))
            code = int(first.split()[1])
            if code >= 200:
                if code >= 300 and method == "INVITE":
                    sock.sendto(message("ACK", h.get("to", "").partition(";tag=")[2]), target)
                return code


class Kamailio:
    def __init__(self, destinations, ping_interval: int = 1):
        self.port = free_udp_port()
        self.address = ("127.0.0.1", self.port)
        self.dir = Path(tempfile.mkdtemp(prefix="callfork-kamailio-"))
        (self.dir / "dispatcher.list").write_text("".join(f"1 {uri} 0 0\n" for uri in destinations))
        self.command = [kamailio_binary(), "-f", str(CONFIG), "-DD", "-E", "-Y", str(self.dir),
                        "-P", str(self.dir / "kamailio.pid"), "-m", "32", "-M", "8",
                        "-A", f"LISTEN=udp:127.0.0.1:{self.port}",
                        "-A", f'DISPATCHER_LIST="{self.dir / "dispatcher.list"}"',
                        "-A", f"PING_INTERVAL={ping_interval}", "-A", "WITH_CTL",
                        "-A", f'CTL_SOCKET="unix:{self.dir / "ctl"}"']
        self.proc = None
        self.log = None

    def start(self) -> "Kamailio":
        self.log = open(self.dir / "kamailio.log", "w")
        self.proc = subprocess.Popen(self.command, cwd=str(self.dir), stdout=self.log, stderr=subprocess.STDOUT)
        def answers():
            assert self.proc.poll() is None, self.output()
            return send_invite(self.address, uuidlib.uuid4().hex, user="", method="OPTIONS", timeout=0.5) == 200
        try:
            wait_until(answers, 15, "kamailio answering OPTIONS")
        except BaseException:
            self.stop()   # (a failing __enter__ gets no __exit__)
            raise
        return self

    def states(self) -> dict:
        """{destination URI: its dispatcher flags} (`kamcmd dispatcher.list`: A active, I inactive,
        T trying, P probing; e.g. "AP", "IP")."""
        out = subprocess.run([shutil.which("kamcmd") or "/usr/sbin/kamcmd", "-s", f"unix:{self.dir / 'ctl'}",
                              "dispatcher.list"], capture_output=True, text=True, timeout=10)
        states, uri = {}, None
        for line in out.stdout.splitlines():
            key, _, value = line.strip().partition(": ")
            if key == "URI":
                uri = value
            elif key == "FLAGS" and uri is not None:
                states[uri] = value
        return states

    def output(self) -> str:
        return (self.dir / "kamailio.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
