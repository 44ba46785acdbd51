"""http benchmark: kept-alive REST requests, the HTTP server as it is (callfork/http_server.py:
TCP_NODELAY on accepted connections) against the server it replaced (gevent's plain WSGIServer), in
the same run (BENCHMARKS.md, "HTTP keep-alive").

One child process (`python -m bench.http_keepalive serve`) runs a real Service with no FreeSWITCH (the
API answers from its store) and a second listener, gevent's `WSGIServer(app, log=None)` exactly as
the service used it before, serving the same Flask app. The orchestrator (plain blocking sockets)
keeps one connection to each and times `count` requests of each kind after a first one: GET
/healthz, GET the call list (authenticated), POST a call with a missing field (400, the body read
and checked). pywsgi sends a response's headers and its body with two send calls; without
TCP_NODELAY Nagle's algorithm holds the body until the client's delayed ACK of the headers.
"""
from __future__ import annotations

import sys

if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    from gevent import monkey

    monkey.patch_all()

import http.client  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench import common  # noqa: E402

TOKEN = "bench-token"
HEADERS = {"X-Auth-ID": "MA_LOCAL", "X-Auth-Token": TOKEN}
REQUESTS = [
    ("GET", "/healthz", None),
    ("GET", "/api/v1/Account/MA_LOCAL/Call/?status=all", None),
    ("POST", "/api/v1/Account/MA_LOCAL/Call/", json.dumps({"from": "1", "to": "2"}).encode()),
]


def serve() -> None:
    """Child: the Service (its HttpServer) and the old server on the same app; prints the ports."""
    from gevent.pywsgi import WSGIServer

    from callfork.service import Service
    from esl_app import load_config

    env = {"CALLFORK_SERVER_DATA_DIR": tempfile.mkdtemp(prefix="callfork-bench-http-"),
           "CALLFORK_SERVER_AUTH_TOKEN": TOKEN, "CALLFORK_FREESWITCH_ESL_PORT": "1",
           "CALLFORK_SERVER_OUTBOUND_LISTEN": "127.0.0.1:0", "CALLFORK_SERVER_HTTP_LISTEN": "127.0.0.1:0",
           "CALLFORK_SERVER_RELAY_LISTEN": "127.0.0.1:0"}
    service = Service(load_config(None, env=env)).start()
    old = WSGIServer(("127.0.0.1", 0), service.http.application, log=None)
    old.start()
    common.serve_control({}, {"new": service.http.address[1], "old": old.address[1]})
    old.stop()
    service.stop()


def _time(port: int, count: int) -> dict:
    """{request: [ms, ...]} over one kept-alive connection (the first request of each kind untimed)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = {}
    for method, path, body in REQUESTS:
        headers = dict(HEADERS, **({"Content-Type": "application/json"} if body else {}))
        times = []
        for i in range(count + 1):
            t0 = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if i:
                times.append((time.perf_counter() - t0) * 1000)
            assert not resp.will_close, "the server closed a kept-alive connection"
        out[f"{method} {path.split('?')[0].replace('/api/v1/Account/MA_LOCAL', '')}"] = times
    conn.close()
    return out


def run(quick: bool = False, log=print) -> list:
    count = 20 if quick else 100
    child = common.Child("bench.http_keepalive", "serve", name="http_keepalive")
    try:
        old = _time(child.info["old"], count)
        new = _time(child.info["new"], count)
    finally:
        child.close()
    head = ["request (kept alive)", "old server p50 ms", "p99 ms", "HTTP server now p50 ms", "p99 ms",
            "old / now (p50)"]
    lines = [f"**HTTP keep-alive: {count} requests of each kind on one connection**", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = []
    for name in old:
        o, n = common.pct(old[name], (50, 99)), common.pct(new[name], (50, 99))
        rows.append({"request": name, "old_p50": o[0], "old_p99": o[1], "new_p50": n[0], "new_p99": n[1]})
        lines.append(f"| {name} | {o[0]:.2f} | {o[1]:.2f} | {n[0]:.2f} | {n[1]:.2f} | {o[0] / n[0]:.0f}x |")
    table = "\n".join(lines)
    log(table)
    return [("http", table, rows)]


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    else:
        run(quick="--quick" in sys.argv)
