"""The HTTP server's limits (issue 12), on the whole product over real sockets: idle and slowloris
connections are closed after [server] http_idle_timeout_s; HTTP connections are capped, so that idle
ones cannot take the file descriptors a call needs (a real `callfork serve` with a low open-files
limit answers a call while more idle connections than it can hold wait), and /healthz says so;
bodies over http_max_body_bytes get 413; JSON nested too deep and an offset beyond SQLite's
integers get 400; accepted connections have TCP_NODELAY (the accepted socket is found in this
process's descriptor table by its addresses); a REST stream to a private URL is refused at once."""
import json
import os
import select
import socket
import stat
import time
from contextlib import contextmanager

import pytest
import requests

from api_support import error_json
from harness import AppServer, Stack
from serve_support import ServeProcess, number_table, serve_ports, write_serve_config
from esl_app import ConfigError, load_config
from switch_sim import CallScript, Simulator
from waiting import wait_until


def test_the_limits_have_defaults_and_bad_values_name_the_key():
    server = load_config(env={}).server
    assert (server.http_max_connections, server.http_idle_timeout_s, server.http_max_body_bytes,
            server.fd_reserve) == (1000, 20, 1048576, 256)
    for key, value in (("HTTP_MAX_CONNECTIONS", "0"), ("HTTP_IDLE_TIMEOUT_S", "-1"),
                       ("HTTP_IDLE_TIMEOUT_S", "nan"), ("HTTP_IDLE_TIMEOUT_S", "inf"), ("HTTP_MAX_BODY_BYTES", "0"),
                       ("FD_RESERVE", "-1"), ("HTTP_MAX_CONNECTIONS", "many")):
        with pytest.raises(ConfigError) as info:
            load_config(env={f"CALLFORK_SERVER_{key}": value})
        assert f"server.{key.lower()}" in str(info.value)


def _nodelay_of(local, peer):
    """TCP_NODELAY of this process's socket whose own address is `local` and peer `peer` (None if
    there is none): every socket descriptor in /proc/self/fd is looked at through a duplicate."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            dup = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with dup:
            try:
                if dup.getsockname() == local and dup.getpeername() == peer:
                    return dup.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            except OSError:
                continue
    return None


def _closed_by_server(sock, timeout=10.0, trickle=None) -> bytes:
    """Wait (up to `timeout`) until the server closes `sock`; what it sent before. `trickle`: bytes
    sent one at a time every 0.1 s meanwhile (a slowloris client). AssertionError if still open."""
    received = b""
    deadline = time.monotonic() + timeout
    data = iter(trickle or b"")
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk
            continue
        byte = next(data, None)
        if byte is not None:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return received
    raise AssertionError(f"the server kept the connection open for {timeout}s (got {received!r})")


def test_idle_and_slowloris_connections_are_closed_and_the_api_still_answers():
    with Stack(env={"CALLFORK_SERVER_HTTP_IDLE_TIMEOUT_S": "0.5"}) as stack:
        port = int(stack.http_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as silent:    # never sends a byte
            assert _closed_by_server(silent) == b""
        with socket.create_connection(("127.0.0.1", port)) as slow:      # the headers a byte at a time
            slow.sendall(b"GET /healthz HTTP/1.1\r\n")
            answer = _closed_by_server(slow, trickle=b"Host: x\r\nX-Slow: " + b"a" * 400)
            assert answer.startswith(b"HTTP/1.1 408 ") and b'"error"' in answer, answer
        with socket.create_connection(("127.0.0.1", port)) as kept:      # one request, then idle
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = _closed_by_server(kept)
            assert answer.startswith(b"HTTP/1.1 200 ") and b'"status"' in answer, answer
        health = requests.get(f"{stack.http_url}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["problems"] == []


def test_accepted_http_connections_have_tcp_nodelay():
    """pywsgi writes a response's headers and body in two sends: without TCP_NODELAY the body waited
    for the client's delayed ACK, 40 ms per kept-alive request (BENCHMARKS.md, HTTP keep-alive).
    callfork's own client connections (webhooks, document fetches; urllib3) have it too."""
    with Stack() as stack:
        port = int(stack.http_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += client.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 ")   # served, and kept alive
            server_side = _nodelay_of(client.getpeername(), client.getsockname())
        assert server_side is not None, "the accepted socket was not found"
        assert server_side != 0
        # a call: callfork fetches the answer document and posts the Hangup webhook to the app
        stack.app.document("/answer", "<Response><Hangup/></Response>")
        stack.call(to="1000").wait(15)
        stack.app.wait_event("Hangup")
        app_address = ("127.0.0.1", stack.app.port)
        ours = []
        for name in os.listdir("/proc/self/fd"):
            try:
                dup = socket.socket(fileno=os.dup(int(name)))
            except OSError:
                continue
            with dup:
                try:
                    if dup.type == socket.SOCK_STREAM and dup.getpeername() == app_address:
                        ours.append(dup.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                except OSError:
                    continue
        assert ours and all(ours), ours   # kept-alive connections of callfork's pools to the app


def test_bodies_over_the_limit_get_413_declared_or_chunked():
    with Stack() as stack:   # default limit: 1 MiB
        url = stack.api_url("/Call/")
        big = json.dumps({"from": "1", "to": "2", "answer_url": "x" * (1536 * 1024)})
        resp = requests.post(url, headers=dict(stack.api_headers(), **{"Content-Type": "application/json"}),
                             data=big, timeout=10)
        assert "larger than" in error_json(resp, 413)["error"]
        # before authentication too, and for a route that would not read it
        assert error_json(requests.post(url, data=big, timeout=10), 413)
        assert error_json(requests.get(f"{stack.http_url}/healthz", data=big, timeout=10), 413)
        # a chunked body (no Content-Length) is cut where it passes the limit

        def chunks():
            for _ in range(24):
                yield b"x" * 65536

        resp = requests.post(url, headers=dict(stack.api_headers(), **{"Content-Type": "application/json"}),
                             data=chunks(), timeout=10)
        assert "larger than" in error_json(resp, 413)["error"]
        # under the limit the API reads it (and finds what is wrong with it)
        small = {"from": "1", "to": "2", "answer_url": "ftp://" + "x" * 1000}
        assert "scheme" in error_json(requests.post(url, headers=stack.api_headers(), json=small, timeout=10),
                                      400)["error"]

        def small_chunks():
            yield json.dumps(small).encode()

        resp = requests.post(url, headers=dict(stack.api_headers(), **{"Content-Type": "application/json"}),
                             data=small_chunks(), timeout=10)
        assert "scheme" in error_json(resp, 400)["error"]
        assert stack.sim.channels == {}


def test_json_nested_too_deep_and_numbers_out_of_range_are_400():
    with Stack() as stack:
        headers = dict(stack.api_headers(), **{"Content-Type": "application/json"})
        unknown = "0b7c4c1e-5a0e-4f7e-9d55-000000000000"
        for path in ("/Call/", f"/Call/{unknown}/", f"/Call/{unknown}/Stream/", "/Webhooks/Retry/"):
            for body in ("[" * 1200, '{"a":' * 1200 + "1" + "}" * 1200,            # past the parser
                         '{"from": "1", "to": "2", "x": ' + "[" * 40 + "1" + "]" * 40 + "}"):  # parsed, too deep
                resp = requests.post(stack.api_url(path), headers=headers, data=body, timeout=10)
                assert "nested" in error_json(resp, 400)["error"], (path, resp.text)
        calls = stack.api_url("/Call/")
        resp = requests.get(calls, headers=stack.api_headers(), params={"status": "all", "offset": 2 ** 63},
                            timeout=10)
        assert "offset" in error_json(resp, 400)["error"]
        resp = requests.get(calls, headers=stack.api_headers(), params={"status": "all", "offset": 2 ** 63 - 1},
                            timeout=10)
        assert resp.status_code == 200 and resp.json()["objects"] == []
        resp = requests.post(calls, headers=headers, timeout=10,
                             data='{"from": "1", "to": "2", "answer_url": "%s", "time_limit": 1e999}'
                             % stack.app.url("/a"))
        assert "time_limit" in error_json(resp, 400)["error"]
        assert stack.sim.channels == {}
        assert requests.get(f"{stack.http_url}/healthz", timeout=5).status_code == 200


def test_a_rest_stream_to_a_private_url_is_refused_at_once():
    with Stack(env={"CALLFORK_SERVER_ALLOW_PRIVATE_URLS": "false"}) as stack:
        path = "/Call/0b7c4c1e-5a0e-4f7e-9d55-000000000000/Stream/"
        for body in ({"service_url": "ws://127.0.0.1:9/stream"}, {"service_url": "wss://10.1.2.3/stream"},
                     {"service_url": "wss://93.184.216.34/s", "status_callback_url": stack.app.url("/status")}):
            resp = requests.post(stack.api_url(path), headers=stack.api_headers(), json=body, timeout=10)
            assert "private or loopback" in error_json(resp, 400)["error"], resp.text
        resp = requests.post(stack.api_url(path), headers=stack.api_headers(), timeout=10,
                             json={"service_url": "https://93.184.216.34/s"})
        assert "scheme" in error_json(resp, 400)["error"]
    assert stack.app.requests == []


@contextmanager
def _serve_with_160_files(tmp_path, answer_doc):
    """`callfork serve` with 160 open files at most, 48 of them kept for calls (fd_reserve), idle
    HTTP connections kept 600 s, on a simulator, its app answering `answer_doc`: yields (serve, sim,
    app, ports, idle); `idle` is for the test's idle connections, closed at the end with the rest."""
    ports = serve_ports()
    app = AppServer().start()
    app.document("/answer", answer_doc)
    config = write_serve_config(tmp_path / "callfork.toml", ports, number_table(app.url("/answer"), app.url("/hangup")),
                                server="http_idle_timeout_s = 600\nfd_reserve = 48", public_url=False)
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    serve = ServeProcess(config, ports["http"], nofile=(160, 160))
    idle = []
    try:
        yield serve, sim, app, ports, idle
    finally:
        for sock in idle:
            sock.close()
        serve.stop()
        sim.stop()
        app.stop()


def test_idle_http_connections_cannot_starve_a_call_of_file_descriptors(tmp_path):
    """`callfork serve` with 160 open files at most, 48 of them kept for calls: the HTTP cap is what
    is left after start-up. Idle connections fill it (/healthz, on the last free one, reports the
    trouble), 200 in all wait, and a call still gets its socket, its answer document and its webhook.
    Without the cap the idle connections took every descriptor (EMFILE) and the call was never answered."""
    with _serve_with_160_files(tmp_path, "<Response><Speak>hello</Speak></Response>") as (serve, sim, app, ports, idle):
        serve.start()
        health = requests.get(f"{serve.http_url}/healthz", timeout=5).json()
        cap = health["http_max_connections"]
        assert health["fd_limit"] == 160 and 40 < cap <= 160 - 48 - 10, health
        for _ in range(cap - 2):
            idle.append(socket.create_connection(("127.0.0.1", ports["http"])))

        def degraded():   # (its own connection counts; one of its earlier ones may not be closed yet)
            resp = requests.get(f"{serve.http_url}/healthz", timeout=5)
            return resp.json() if resp.status_code == 503 and resp.json()["http_connections"] >= cap - 1 else None

        body = wait_until(degraded, 10, "/healthz reporting the connections")
        assert body["status"] == "degraded" and body["freeswitch_connected"] is True
        assert any("HTTP connections" in p for p in body["problems"]), body
        while len(idle) < 200:   # more than the process could hold: beyond the cap they wait in the
            idle.append(socket.create_connection(("127.0.0.1", ports["http"])))   # listen backlog
        call = sim.place_call(CallScript(to="1000", hangup_after=30))
        summary = call.wait(20)
        assert summary["answered"], (summary, serve.output()[-3000:])
        hangup = app.wait_event("Hangup", timeout=15)
        assert hangup.form["CallUUID"] == call.uuid
        for sock in idle:
            sock.close()
        wait_until(lambda: requests.get(f"{serve.http_url}/healthz", timeout=5).status_code == 200, 15,
                   "/healthz ok again")
        assert "Too many open files" not in serve.output()


def test_inside_the_reserve_http_connections_are_refused_while_calls_hold_descriptors(tmp_path):
    """The cap leaves `fd_reserve` descriptors free at start; when calls then take descriptors, an
    HTTP connection accepted inside the reserve is answered 503 at once and closed, and /healthz
    says connections were refused."""
    with _serve_with_160_files(tmp_path, "<Response><Wait length='60'/></Response>") as (serve, sim, app, ports, idle), \
            requests.Session() as polls:
        # The test's own polls keep one connection: a poll on a connection of its own would leave
        # the server closing that socket while the idle ones are accepted, and the probe below
        # could take the descriptor it frees, below the reserve, and be served.
        serve.start()
        cap = polls.get(f"{serve.http_url}/healthz", timeout=5).json()["http_max_connections"]
        for _ in range(30):   # each call holds its socket from FreeSWITCH, and fetches
            sim.place_call(CallScript(to="1000", hangup_after=60))
        wait_until(lambda: polls.get(f"{serve.http_url}/healthz", timeout=5).json()["live_calls"] == 30, 20,
                   "30 live calls")
        wait_until(lambda: polls.get(f"{serve.http_url}/healthz", timeout=5).json()["http_connections"] == 1, 10,
                   "the polls' connection alone open")
        for _ in range(cap - 2):   # every descriptor below the reserve is taken now (with the polls' one)
            idle.append(socket.create_connection(("127.0.0.1", ports["http"])))
        resp = requests.get(f"{serve.http_url}/healthz", timeout=5)
        assert "short of file descriptors" in error_json(resp, 503)["error"]
        for sock in idle:
            sock.close()

        def refusals_reported():
            body = polls.get(f"{serve.http_url}/healthz", timeout=5).json()
            return body if any("refused" in p for p in body.get("problems", [])) else None

        body = wait_until(refusals_reported, 15, "/healthz reporting the refusals")
        assert body["status"] == "degraded" and body["live_calls"] == 30
        metrics = polls.get(f"{serve.http_url}/metrics", timeout=5).text
        assert "callfork_http_refused_total 0" not in metrics and "callfork_http_refused_total" in metrics
