"""audio_fork.app_connection.AppConnection against a real TCP server that speaks the server side
of RFC 6455 by hand (bytes written here, not by the code under test): what the opening request
carries, every way the handshake can fail, and what the reader makes of fragments, pings, binary
messages, the app's Close, a protocol error and a dropped connection."""
import socket
import struct

import gevent
import gevent.event
import pytest
from gevent.server import StreamServer

from audio_fork.app_connection import AppConnectError, AppConnection, AppConnectionLost

from harness import free_port
from raw_ws_app import RawApp, read_client_frames, server_frame
from waiting import wait_until

@pytest.fixture
def apps():
    made = []

    def make(**kw):
        made.append(RawApp(**kw))
        return made[-1]
    yield make
    for app in made:
        app.stop()


def test_the_opening_request_carries_the_path_query_headers_and_offered_subprotocol(apps):
    app = apps(answer=lambda req, key: RawApp.accept(req, key, "Sec-WebSocket-Protocol: audio.v2\r\n"))
    conn = AppConnection.connect(app.url, ["User-Agent: callfork/test", "X-Token: abc",
                                           "Sec-WebSocket-Protocol: audio.v1, audio.v2"], timeout=3)
    try:
        request = app.requests[0]
        assert request.startswith("GET /app?x=1 HTTP/1.1\r\n")
        lines = request.lower().split("\r\n")
        assert "user-agent: callfork/test" in lines and "x-token: abc" in lines
        assert "sec-websocket-protocol: audio.v1, audio.v2" in lines
        assert "sec-websocket-version: 13" in lines
        # media must not wait for Nagle; a dead app's host is found by the kernel on an idle stream
        assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    finally:
        conn.shutdown()


@pytest.mark.parametrize("answer, error", [
    (lambda req, key: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "handshake rejected: HTTP 403"),
    (lambda req, key: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n", "Sec-WebSocket-Accept"),
    (lambda req, key: b"garbage\r\n\r\n", "InvalidMessage"),
    (lambda req, key: RawApp.accept(req, key, "Sec-WebSocket-Protocol: nobody.asked\r\n"), "subprotocol"),
    (lambda req, key: None, "no handshake within 0.5s"),
])
def test_a_failed_handshake_is_one_clear_error(apps, answer, error):
    app = apps(answer=answer)
    with pytest.raises(AppConnectError) as info:
        AppConnection.connect(app.url, timeout=0.5)
    assert error in str(info.value)


def test_unreachable_and_malformed_urls_are_clear_errors():
    with pytest.raises(AppConnectError, match="ConnectionRefusedError"):
        AppConnection.connect(f"ws://127.0.0.1:{free_port()}/x", timeout=2)
    with pytest.raises(AppConnectError, match="bad app url"):
        AppConnection.connect("http://127.0.0.1/x", timeout=2)
    with pytest.raises(AppConnectError, match="bad handshake header"):
        AppConnection.connect("ws://127.0.0.1:1/x", ["no colon here"], timeout=2)


def test_an_untrusted_certificate_is_refused(apps, tmp_path):
    import ssl
    import subprocess

    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = StreamServer(("127.0.0.1", free_port()), lambda s, _: s.recv(1), ssl_context=ctx)
    server.start()
    try:
        with pytest.raises(AppConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            AppConnection.connect(f"wss://127.0.0.1:{server.server_port}/x", timeout=3)
    finally:
        server.stop(timeout=1)


def _opened(apps, script):
    app = apps(script=script)
    return app, AppConnection.connect(app.url, timeout=3)


def test_fragments_binary_and_frames_right_behind_the_101_reach_the_reader_in_order(apps):
    def script(sock):
        sock.sendall(server_frame(1, b'{"a":', fin=False) + server_frame(0, b'"b', fin=False)
                     + server_frame(0, b'"}') + server_frame(2, b"\x01\x02") + server_frame(1, b"last"))
    app = apps(answer=lambda req, key: RawApp.accept(req, key) + server_frame(1, b"first"), script=script)
    conn = AppConnection.connect(app.url, timeout=3)
    try:
        got = [conn.receive() for _ in range(4)]
        assert got == [(True, b"first"), (True, b'{"a":"b"}'), (False, b"\x01\x02"), (True, b"last")]
    finally:
        conn.shutdown()


def test_a_ping_is_answered_and_the_apps_close_is_answered_with_its_code(apps):
    seen = []

    def script(sock):
        sock.sendall(server_frame(9, b"hi") + server_frame(8, struct.pack("!H", 4001) + b"bye"))
        seen.extend(read_client_frames(sock, 2))
    app, conn = _opened(apps, script)
    try:
        assert conn.receive() is None
        assert conn.close_code == 4001
        wait_until(lambda: len(seen) == 2, 5, "the pong and the Close")
        assert seen[0] == (10, True, b"hi")                       # the pong
        assert seen[1][0] == 8 and seen[1][2][:2] == struct.pack("!H", 4001)
    finally:
        conn.shutdown()


def test_a_masked_frame_from_the_app_fails_the_connection_with_1002(apps):
    seen = []

    def script(sock):
        sock.sendall(server_frame(1, b"x", masked=True))
        seen.extend(read_client_frames(sock, 1))
    app, conn = _opened(apps, script)
    try:
        with pytest.raises(AppConnectionLost, match="protocol error"):
            conn.receive()
        wait_until(lambda: seen, 5, "the Close")
        assert seen and seen[0][0] == 8 and seen[0][2][:2] == struct.pack("!H", 1002)
    finally:
        conn.shutdown()


def test_a_dropped_connection_is_lost_not_closed(apps):
    app, conn = _opened(apps, lambda sock: sock.close())
    with pytest.raises(AppConnectionLost, match="without a Close"):
        conn.receive()
    conn.shutdown()


def test_our_close_is_sent_once_and_the_apps_answer_ends_the_reader(apps):
    def script(sock):
        frames = read_client_frames(sock, 1)
        sock.sendall(server_frame(8, frames[0][2]))
    app, conn = _opened(apps, script)
    assert conn.close(1000) is True
    assert conn.close(1000) is False          # already closing
    assert conn.receive() is None and conn.close_code == 1000
    conn.shutdown()


def test_send_now_and_send_all_write_what_they_are_given(apps):
    got = []
    app, conn = _opened(apps, lambda sock: got.extend(read_client_frames(sock, 2)))
    from audio_fork.appframes import text_frame

    try:
        assert conn.send_now(text_frame("one")) == len(text_frame("one"))
        conn.send_all(text_frame("two"), 2.0)
        wait_until(lambda: len(got) == 2, 5, "both frames")
        assert [(op, data) for op, _, data in got] == [(1, b"one"), (1, b"two")]
        with conn.lock:
            assert conn.send_now(b"x") is None    # another greenlet is part-way through a frame
    finally:
        conn.shutdown()


def test_an_endless_fragmented_message_fails_with_1009_and_the_reader_lets_others_run(apps):
    """A text message sent as an endless run of continuation frames: refused once it passes the
    fragment cap (1009), and while the frames are read other greenlets keep running."""
    from audio_fork.app_connection import MAX_FRAGMENTS

    seen, sent = [], gevent.event.Event()

    def script(sock):
        sock.sendall(server_frame(1, b"x" * 16, fin=False)
                     + server_frame(0, b"y" * 16, fin=False) * (MAX_FRAGMENTS + 10))
        sent.set()
        read_client_frames(sock, 1, out=seen)
    app, conn = _opened(apps, script)
    ticks = []

    def tick():
        while True:
            gevent.sleep(0)
            ticks.append(1)
    ticker = gevent.spawn(tick)
    try:
        sent.wait(5)
        ticks.clear()   # from here on, a tick means the reader let the hub run
        with pytest.raises(AppConnectionLost, match="message too big"):
            conn.receive()
        assert ticks, "the reader never let another greenlet run"
        wait_until(lambda: seen, 5, "the Close")
        assert seen[0][0] == 8 and seen[0][2][:2] == struct.pack("!H", 1009)
    finally:
        ticker.kill()
        conn.shutdown()
