"""ControlConnection against a scripted inbound ESL server (real TCP): auth ok / wrong password,
api, bgapi with BACKGROUND_JOB, a dropped connection -> reconnect and the subscription sent again.
Replies are the captured FreeSWITCH frames; the BACKGROUND_JOB event is serialized by the rules of
FreeSWITCH's switch_event.c, in the format the last `event` command asked for (callfork
asks for json; esl_capture_tools' json serializer is checked against real frames in
test_esl_json_events.py)."""
import logging
import time
import uuid

import gevent
import gevent.event
from gevent.server import StreamServer

from esl_app import ControlConnection, ESLError
from esl_app.control import backoff_delays
from esl_capture_tools import (CAPTURES, CommandReader, api_reply_from, exchanges, expected_frame, json_event_frame,
                               load_blocks, plain_event_frame)
from waiting import wait_until

INBOUND = exchanges(load_blocks(CAPTURES / 'inbound-esl-transcript.txt'))
AUTH_REQUEST = [b.data for b in load_blocks(CAPTURES / 'inbound-esl-transcript.txt') if b.from_fs][0]
AUTH_OK = INBOUND[0].replies[0]
EVENT_OK = INBOUND[1].replies[0]
ORIGINATE = [e for e in INBOUND if e.line.startswith('api originate')][0]
FINAL_NOTICE = [e for e in INBOUND if e.line == 'exit'][0].replies[-1]
BYE = [e for e in INBOUND if e.line == 'exit'][0].replies[0]
EVENT_JSON_OK = api_reply_from('inbound-esl-transcript.jsonl', 'event json')


class InboundFS:
    def __init__(self, password='ClueCon'):
        self.password = password
        self.connections = []      # one list of commands per TCP connection
        self.sockets = []
        self.job_bodies = {}
        self.formats = []          # the event format of each connection, as its last `event` set it
        self.changed = gevent.event.Event()
        self.server = StreamServer(('127.0.0.1', 0), self.handle)
        self.server.start()

    @property
    def port(self):
        return self.server.server_port

    def wait_for(self, predicate, timeout=5):
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            self.changed.wait(min(remaining, 0.05))
        return True

    def handle(self, sock, addr):
        commands = []
        fmt = 'plain'
        self.connections.append(commands)
        self.sockets.append(sock)
        self.changed.set()
        sock.sendall(AUTH_REQUEST)
        reader = CommandReader(sock)
        try:
            while True:
                cmd = reader.read()
                if cmd is None:
                    return
                commands.append(cmd)
                self.changed.set()
                line = cmd.line
                if line.startswith('auth '):
                    if line[len('auth '):] == self.password:
                        sock.sendall(AUTH_OK)
                    else:
                        sock.sendall(b'Content-Type: command/reply\nReply-Text: -ERR invalid\n\n' + FINAL_NOTICE)
                        return
                elif line.startswith('event plain'):
                    fmt = 'plain'
                    sock.sendall(EVENT_OK)
                elif line.startswith('event json'):
                    fmt = 'json'
                    sock.sendall(EVENT_JSON_OK)
                elif line == ORIGINATE.line:
                    sock.sendall(ORIGINATE.replies[0])
                elif line.startswith('bgapi '):
                    job = cmd.headers['job-uuid']
                    sock.sendall(b'Content-Type: command/reply\nReply-Text: +OK Job-UUID: %s\nJob-UUID: %s\n\n'
                                 % (job.encode(), job.encode()))
                    body = '+OK %s\n' % uuid.uuid4()
                    self.job_bodies[job] = body
                    command, _, arg = line[len('bgapi '):].partition(' ')
                    frame = json_event_frame if fmt == 'json' else plain_event_frame
                    self.formats.append(fmt)
                    sock.sendall(frame([('Event-Name', 'BACKGROUND_JOB'), ('Core-UUID', str(uuid.uuid4())),
                                        ('Event-Date-Local', '2026-11-21 09:38:25'),
                                        ('Job-UUID', job), ('Job-Command', command),
                                        ('Job-Command-Arg', arg)], body))
                elif line == 'exit':
                    sock.sendall(BYE + FINAL_NOTICE)
                    return
                else:
                    sock.sendall(b'Content-Type: command/reply\nReply-Text: -ERR command not found\n\n')
        except OSError:
            return
        finally:
            sock.close()

    def drop(self):
        for sock in self.sockets:
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()

    def stop(self):
        self.drop()
        self.server.stop()


EVENTS = ('CHANNEL_ANSWER', 'CHANNEL_HANGUP_COMPLETE', 'CUSTOM', 'mod_audio_fork::connect')


def test_auth_api_bgapi_and_events():
    fs = InboundFS()
    seen = []
    control = ControlConnection('127.0.0.1', fs.port, 'ClueCon', events=EVENTS, on_event=seen.append,
                                backoff_initial=0.05)
    try:
        control.start()
        assert control.wait_connected(5) and control.connected
        assert [c.line for c in fs.connections[0]] == ['auth ClueCon', 'event json BACKGROUND_JOB ' + ' '.join(EVENTS)]
        body = control.api(ORIGINATE.line[len('api '):])
        assert body == expected_frame(ORIGINATE.replies[0])['body'].decode()
        arg = '{origination_caller_id_number=15551230001}loopback/talker/default &park()'
        result = control.bgapi('originate ' + arg)
        bgapi = [c for c in fs.connections[0] if c.line.startswith('bgapi')][0]
        job = bgapi.headers['job-uuid']
        assert uuid.UUID(job)
        assert result == fs.job_bodies[job]
        assert seen and seen[-1].name == 'BACKGROUND_JOB' and seen[-1].content_type == 'text/event-json'
        assert fs.formats == ['json']
        assert seen[-1].get('Job-Command-Arg') == arg and seen[-1].get('Job-UUID') == job
        try:
            control.api('no_such_thing')
        except ESLError as exc:
            assert exc.reply == '-ERR command not found'
        else:
            raise AssertionError('-ERR must raise ESLError')
        assert control.reconnects == 0
    finally:
        control.stop()
        fs.stop()


def test_wrong_password_is_logged_and_retried(caplog):
    caplog.set_level(logging.WARNING)
    fs = InboundFS(password='secret')
    control = ControlConnection('127.0.0.1', fs.port, 'ClueCon', backoff_initial=0.02, backoff_max=0.05)
    try:
        control.start()
        assert fs.wait_for(lambda: len(fs.connections) >= 3)       # it keeps retrying
        assert not control.connected and not control.wait_connected(0.05)
        assert any('wrong password' in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
        try:
            control.api('status')
        except ESLError as exc:
            assert 'not connected' in str(exc)
        else:
            raise AssertionError('api while disconnected must raise')
    finally:
        control.stop()
        fs.stop()


def test_reconnect_resubscribes():
    fs = InboundFS()
    control = ControlConnection('127.0.0.1', fs.port, 'ClueCon', events=EVENTS, backoff_initial=0.02)
    try:
        control.start()
        assert control.wait_connected(5)
        fs.drop()
        assert fs.wait_for(lambda: len(fs.connections) >= 2 and len(fs.connections[1]) >= 2)
        assert fs.wait_for(lambda: control.connected and control.reconnects == 1)
        assert [c.line for c in fs.connections[1]] == [c.line for c in fs.connections[0]][:2]
        assert fs.connections[1][1].line.startswith('event json ')
        assert control.api(ORIGINATE.line[len('api '):]) == expected_frame(ORIGINATE.replies[0])['body'].decode()
    finally:
        control.stop()
        fs.stop()
    assert not control.connected


def test_backoff_is_exponential_and_capped():
    delays = backoff_delays(0.5, 30)
    got = [next(delays) for _ in range(9)]
    assert got == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_connection_refused_retries_quickly_and_connects_when_fs_appears(caplog):
    caplog.set_level(logging.WARNING)
    probe = StreamServer(('127.0.0.1', 0), lambda s, a: None)
    probe.start()
    port = probe.server_port
    probe.stop()                                   # nothing listens there now
    control = ControlConnection('127.0.0.1', port, 'ClueCon', backoff_initial=0.02, backoff_max=0.05)
    fs = None
    try:
        control.start()
        wait_until(lambda: sum('failed' in r.getMessage() for r in caplog.records) >= 3, 5, 'retries',
                   interval=0.01)
        assert not control.connected
        fs = InboundFS()
        fs.server.stop()
        fs.server = StreamServer(('127.0.0.1', port), fs.handle)
        fs.server.start()
        assert control.wait_connected(5)
        assert control.reconnects == 0          # the first successful connection is not a reconnect
    finally:
        control.stop()
        if fs:
            fs.stop()
