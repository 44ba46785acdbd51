"""The simulated mod_audio_fork WebSocket client (switch_sim.fork_ws.AudioPipe) against a real
WebSocket server, checked against the captured handshake and close behaviour."""
import json
import socket

import gevent
import pytest
from gevent.event import Event

from switch_sim import fork_handshake, fork_ws
from fork_ws_server import start_server


@pytest.fixture
def server():
    srv = start_server()
    yield srv
    srv.stop()


class Recorder:
    def __init__(self):
        self.events = []
        self.changed = Event()

    def __call__(self, kind, payload):
        self.events.append((kind, payload))
        ev, self.changed = self.changed, Event()
        ev.set()

    def wait_for(self, kind, timeout=5.0):
        with gevent.Timeout(timeout, False):
            while not any(k == kind for k, _ in self.events):
                self.changed.wait(0.5)
        return [p for k, p in self.events if k == kind]


def make_pipe(port, path='/x', flavor='jambonz', **kw):
    rec = Recorder()
    pipe = fork_ws.AudioPipe(host='127.0.0.1', port=port, path=path, tls_flags=None, flavor=flavor,
                             buffer_bytes=32000, min_free=320, callback=rec,
                             encode_audio=lambda frames: b''.join(frames), **kw)
    return pipe, rec


def captured_request_headers(captures_dir):
    data = json.loads((captures_dir / 'audio-fork-results-drachtio.json').read_text())
    ws = data['scenarios'][0]['ws']
    return ws['request_line'], ws['request_headers']


def test_handshake_is_what_libwebsockets_sends(server, captures_dir):
    line, headers = captured_request_headers(captures_dir)
    pipe, rec = make_pipe(server.port, path='/phaseA-mono8k')
    pipe.connect()
    assert rec.wait_for(fork_ws.CONNECT_SUCCESS) == [None]
    conn = server.wait_connection()
    assert conn.request_line == line
    assert [k for k, _ in conn.headers] == [k for k, _ in headers]
    for (k, v), (ck, cv) in zip(conn.headers, headers):
        if k != 'Sec-WebSocket-Key':
            assert v == cv, k
    pipe.close()
    assert conn.closed.wait(5)
    assert (conn.close_code, conn.close_reason, conn.close_initiator) == (1000, '', 'client')
    # closing on our own request is not a "disconnect"
    assert rec.wait_for(fork_ws.CONNECTION_CLOSED_GRACEFULLY) == [None]
    assert not any(k == fork_ws.CONNECTION_DROPPED for k, _ in rec.events)


def test_query_string_and_basic_auth(server):
    pipe, rec = make_pipe(server.port, path='/fork/abc?token=s3cret', username='user', password='pa:ss')
    pipe.connect()
    rec.wait_for(fork_ws.CONNECT_SUCCESS)
    conn = server.wait_connection()
    assert conn.request_line == 'GET /fork/abc?token=s3cret HTTP/1.1'
    assert conn.headers[-1] == ('Authorization', 'Basic dXNlcjpwYTpzcw==')
    assert conn.header('Host') == '127.0.0.1'
    pipe.close()
    assert conn.closed.wait(5)
    # a too long user:password does not fit libwebsockets' 128-byte buffer: no header at all
    assert fork_handshake.basic_auth_header('u' * 60, 'p' * 60) is None
    # only a user: no header
    pipe2, rec2 = make_pipe(server.port, path='/nouser', username='user', password=None)
    pipe2.connect()
    rec2.wait_for(fork_ws.CONNECT_SUCCESS)
    conn2 = server.wait_connection(2)
    assert conn2.header('Authorization') is None
    pipe2.close()
    assert conn2.closed.wait(5)


def test_connect_failures_have_the_captured_reasons(server, captures_dir):
    data = json.loads((captures_dir / 'audio-fork-results-drachtio.json').read_text())
    reasons = {c['case']: json.loads(c['event']['_body'])['reason'] for c in data['failure_cases']
               if c['event'] and c['event']['Event-Subclass'] == 'mod_audio_fork::connect_failed'}
    refused_reason = next(v for k, v in reasons.items() if 'unreachable' in k)
    reject_reason = next(v for k, v in reasons.items() if '403' in k)
    # a port nobody listens on
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    free_port = s.getsockname()[1]
    s.close()
    pipe, rec = make_pipe(free_port)
    pipe.connect()
    assert rec.wait_for(fork_ws.CONNECT_FAIL) == [refused_reason]
    pipe, rec = make_pipe(server.port, path='/reject403')
    pipe.connect()
    assert rec.wait_for(fork_ws.CONNECT_FAIL) == [reject_reason]
    # a subprotocol that was not offered
    pipe, rec = make_pipe(server.port, path='/wrongproto')
    pipe.connect()
    assert rec.wait_for(fork_ws.CONNECT_FAIL) == ['HS: PROTOCOL malformed']


def test_no_subprotocol_is_accepted(server):
    pipe, rec = make_pipe(server.port, path='/noproto')
    pipe.connect()
    assert rec.wait_for(fork_ws.CONNECT_SUCCESS) == [None]
    pipe.buffer_for_sending('{"a":1}')
    conn = server.wait_connection()
    assert conn.wait_until(lambda: conn.texts == ['{"a":1}'])
    pipe.close()
    assert conn.closed.wait(5)


@pytest.mark.parametrize('flavor,expected', [('drachtio', ['{"a":1}{"b":2}']), ('jambonz', ['{"a":1}', '{"b":2}'])])
def test_pending_texts_per_flavour(server, flavor, expected):
    pipe, rec = make_pipe(server.port, flavor=flavor)
    pipe.connect()
    rec.wait_for(fork_ws.CONNECT_SUCCESS)
    conn = server.wait_connection()
    pipe.buffer_for_sending('{"a":1}')
    pipe.buffer_for_sending('{"b":2}')   # before the writer ran: both are pending
    assert conn.wait_until(lambda: len(''.join(conn.texts)) == 14)
    assert conn.texts == expected
    pipe.close()
    assert conn.closed.wait(5)


def test_final_text_then_close_and_audio_before_it(server):
    pipe, rec = make_pipe(server.port)
    pipe.connect()
    rec.wait_for(fork_ws.CONNECT_SUCCESS)
    conn = server.wait_connection()
    pipe.push_audio(b'\x01\x00' * 160, 320)
    pipe.request_write()
    assert conn.wait_until(lambda: len(conn.binaries) == 1)
    pipe.buffer_for_sending('{"event":"stop"}')
    pipe.close()
    assert conn.closed.wait(5)
    assert [k for _, k, _ in conn.messages] == ['binary', 'text']
    assert conn.texts == ['{"event":"stop"}'] and conn.close_code == 1000


def test_server_close_is_a_dropped_connection(server):
    pipe, rec = make_pipe(server.port)
    pipe.connect()
    rec.wait_for(fork_ws.CONNECT_SUCCESS)
    conn = server.wait_connection()
    conn.close(1000, 'bye from server')
    assert rec.wait_for(fork_ws.CONNECTION_DROPPED) == [None]
    assert conn.closed.wait(5)
    assert pipe.state == fork_ws.DISCONNECTED
    # nothing can be sent any more
    pipe.buffer_for_sending('late')
    assert conn.texts == []


def test_graceful_shutdown_sends_empty_binary_frames_and_never_closes(server):
    pipe, rec = make_pipe(server.port)
    pipe.connect()
    rec.wait_for(fork_ws.CONNECT_SUCCESS)
    conn = server.wait_connection()
    pipe.do_graceful_shutdown()
    assert conn.wait_until(lambda: len(conn.binaries) == 1)
    pipe.buffer_for_sending('{"after":"graceful"}')
    assert conn.wait_until(lambda: len(conn.binaries) == 2)
    pipe.close()
    assert conn.wait_until(lambda: len(conn.binaries) == 3)
    assert [len(d) for _, d in conn.binaries] == [0, 0, 0]
    assert conn.texts == []
    assert not conn.closed.wait(0.3)
    conn.close(1000, 'test done')
    assert conn.closed.wait(5)
    # the pipe was disconnecting: no "dropped" notification
    assert rec.wait_for(fork_ws.CONNECTION_CLOSED_GRACEFULLY) == [None]


def test_server_messages_reach_the_owner(server):
    pipe, rec = make_pipe(server.port)
    pipe.connect()
    rec.wait_for(fork_ws.CONNECT_SUCCESS)
    conn = server.wait_connection()
    conn.send_text('{"type":"killAudio"}')
    conn.send_bytes(b'\x00' * 1601)
    assert rec.wait_for(fork_ws.MESSAGE) == ['{"type":"killAudio"}']
    assert [len(b) for b in rec.wait_for(fork_ws.BINARY)] == [1601]
    pipe.close()
    assert conn.closed.wait(5)


def test_abort_drops_open_and_connecting_pipes(server):
    pipe, rec = make_pipe(server.port)
    pipe.connect()
    rec.wait_for(fork_ws.CONNECT_SUCCESS)
    conn = server.wait_connection()
    pipe.abort()
    assert conn.closed.wait(5)
    assert conn.close_code is None          # no close handshake, the TCP connection just went
    pending, rec2 = make_pipe(server.port, path='/late')
    pending.connect()
    pending.abort()                          # still connecting: no notification at all
    assert server.wait_connection(2) is not None
    assert server.connections[1].closed.wait(5)
    assert all(k != fork_ws.CONNECT_SUCCESS for k, _ in rec2.events)
