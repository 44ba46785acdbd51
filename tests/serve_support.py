"""`callfork serve` as a real subprocess, for the tests that kill it or talk to it from outside: the
process (`ServeProcess`) and the config file it runs with (`serve_ports`, `write_serve_config`,
`number_table`), and what its webhooks must have done once the receiver is back
(`check_delivered_once_in_order`)."""
import os
import resource
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from harness import free_port
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
CALLFORK = [sys.executable, "-m", "callfork.cli"]


def serve_ports() -> dict:
    """A free loopback port for each of `callfork serve`'s listeners and the simulator's ESL."""
    return {name: free_port() for name in ("esl", "outbound", "http", "relay")}


def number_table(answer_url: str, hangup_url: str | None = None, number: str = "*") -> str:
    """A [[numbers]] table of the config."""
    table = f'[[numbers]]\nnumber = "{number}"\nanswer_url = "{answer_url}"\n'
    return table + (f'hangup_url = "{hangup_url}"\n' if hangup_url is not None else "")


def write_serve_config(path: Path, ports: dict, numbers: str, server: str = "", webhooks: dict | None = None,
                       public_url: bool = True) -> Path:
    """`path` made a config for `callfork serve` on `ports` (serve_ports()): the simulator's ESL,
    auth token "test-token", data in var/ beside the file; `server`: more [server] lines;
    `webhooks`: the [webhooks] settings, if any; `numbers`: the [[numbers]] tables (number_table)."""
    lines = ["[freeswitch]", f"esl_port = {ports['esl']}", "[server]",
             f"outbound_listen = \"127.0.0.1:{ports['outbound']}\"",
             f"http_listen = \"127.0.0.1:{ports['http']}\"",
             f"relay_listen = \"127.0.0.1:{ports['relay']}\""]
    if public_url:
        lines.append(f"public_url = \"http://127.0.0.1:{ports['http']}\"")
    lines += ['auth_token = "test-token"', f"data_dir = \"{path.parent / 'var'}\""]
    if server:
        lines.append(server)
    if webhooks:
        lines += ["[webhooks]"] + [f"{key} = {value}" for key, value in webhooks.items()]
    path.write_text("\n".join(lines) + "\n" + numbers)
    return path


class ServeProcess:
    """`callfork --config FILE serve` as a subprocess (output in files, killed in the end);
    `nofile=(soft, hard)` starts it with that limit of open files."""

    def __init__(self, config_file: Path, http_port: int, env: dict | None = None, args=None, nofile=None):
        self.config_file = config_file
        self.http_url = f"http://127.0.0.1:{http_port}"
        self.env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.env.update(env or {})
        self.args = args
        self.nofile = nofile
        self.proc = None
        self.log = None

    def start(self, timeout=15.0) -> "ServeProcess":
        self.log = tempfile.NamedTemporaryFile(prefix="callfork-serve-", suffix=".log", delete=False)
        args = self.args if self.args is not None else ["--config", str(self.config_file), "serve"]
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)) if self.nofile else None
        self.proc = subprocess.Popen(CALLFORK + args, cwd=str(self.config_file.parent), env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=limit)
        def healthy():
            assert self.proc.poll() is None, f"callfork serve exited: {self.output()}"
            try:
                return requests.get(self.http_url + "/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False
        try:
            wait_until(healthy, timeout, "callfork serve healthy", interval=0.05)
        except AssertionError:
            raise AssertionError(f"callfork serve not healthy in {timeout}s: {self.output()}") from None
        return self

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace") if self.log else ""

    def health(self) -> dict:
        """Its /healthz body (whatever the status: a degraded node answers 503 with it)."""
        return requests.get(f"{self.http_url}/healthz", timeout=5).json()

    def answering(self) -> bool:
        """Its HTTP listener answers (healthy or not); it must still run."""
        assert self.proc.poll() is None, self.output()
        try:
            requests.get(self.http_url + "/healthz", timeout=1)
            return True
        except requests.ConnectionError:
            return False

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.log is not None:
            self.log.close()


def idempotency_key(req) -> str:
    """The idempotency key a webhook request carries."""
    return req.headers["x-callfork-idempotency-key"]


def check_delivered_once_in_order(answered, deliveries) -> None:
    """`answered`: the webhook requests answered 200, in arrival order; `deliveries`: the stored
    ones. Each key arrived exactly once, and each call's in enqueue order."""
    keys = [idempotency_key(r) for r in answered]
    assert len(keys) == len(set(keys)), "a key was delivered twice"
    assert sorted(keys) == sorted(d["idempotency_key"] for d in deliveries)
    by_call = {}
    for d in deliveries:
        by_call.setdefault(d["call_uuid"], []).append(d["idempotency_key"])
    for call_uuid, expected in by_call.items():
        assert [k for k in keys if k in expected] == expected, f"call {call_uuid}: out of order"
