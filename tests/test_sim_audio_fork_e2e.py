"""mod_audio_fork emulation end to end: a call in the simulator, `uuid_audio_fork` over the inbound
ESL socket, a real WebSocket server on the other side. Expectations come from the captures."""
import base64
import io
import json
import os
import socket
import time
import wave

import gevent
import numpy as np
import pytest
from gevent.event import Event
from gevent.queue import Queue

from fork_ws_server import start_server
from switch_sim import Simulator
from switch_sim.caller import CallerModel, CallScript
from switch_sim.urlenc import url_decode

FLAVORS = ('drachtio', 'jambonz')
FORK_EVENTS = ('connect connect_failed disconnect buffer_overrun play_audio kill_audio transcription transfer '
               'error json').split()


# ------------------------------------------------------------------ a minimal inbound ESL client
class ESL:
    def __init__(self, address, password='ClueCon'):
        self.sock = socket.create_connection(address, timeout=5)
        self.buf = b''
        self.replies = Queue()
        self.events = []
        self.changed = Event()
        assert self._read_frame()[0]['Content-Type'] == 'auth/request'
        self.sock.sendall(b'auth %s\n\n' % password.encode())
        assert self._read_frame()[0]['Reply-Text'].startswith('+OK')
        self.reader = gevent.spawn(self._run)
        subs = ' '.join('mod_audio_fork::' + e for e in FORK_EVENTS)
        self.command('event plain CHANNEL_HANGUP_COMPLETE PLAYBACK_STOP CUSTOM ' + subs)

    def _read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _read_frame(self):
        while b'\n\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        head, self.buf = self.buf.split(b'\n\n', 1)
        headers = dict(line.split(': ', 1) for line in head.decode().split('\n') if ': ' in line)
        body = self._read_exact(int(headers['Content-Length'])) if 'Content-Length' in headers else b''
        return headers, body

    def _run(self):
        self.sock.settimeout(None)
        try:
            while True:
                headers, body = self._read_frame()
                ctype = headers.get('Content-Type')
                if ctype in ('api/response', 'command/reply'):
                    self.replies.put(body.decode() if ctype == 'api/response' else headers.get('Reply-Text'))
                elif ctype == 'text/event-plain':
                    ihead, _, ibody = body.decode().partition('\n\n')
                    ev = {}
                    for line in ihead.split('\n'):
                        if ': ' in line:
                            k, v = line.split(': ', 1)
                            ev.setdefault(k, url_decode(v))
                    if 'Content-Length' in ev:
                        ev['_body'] = ibody[:int(ev['Content-Length'])]
                    self.events.append(ev)
                    ch, self.changed = self.changed, Event()
                    ch.set()
        except (EOFError, OSError):
            pass

    def command(self, text):
        self.sock.sendall(text.encode() + b'\n\n')
        return self.replies.get(timeout=5)

    def api(self, text):
        return self.command('api ' + text)

    def fork_events(self, uuid):
        return [e for e in self.events if e.get('Unique-ID') == uuid
                and e.get('Event-Subclass', '').startswith('mod_audio_fork::')]

    def wait_event(self, uuid, subclass, count=1, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            got = [e for e in self.events if e.get('Unique-ID') == uuid and
                   (e.get('Event-Subclass') == subclass or e.get('Event-Name') == subclass)]
            if len(got) >= count:
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError('no %s for %s; got %s' % (subclass, uuid, [
                    e.get('Event-Subclass') or e.get('Event-Name') for e in self.events]))
            self.changed.wait(min(left, 0.5))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.reader.kill()


# ------------------------------------------------------------------ fixtures
def sine(freq, seconds, rate=8000, amp=6000):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def start_call(sim, caller_hz=300.0):
    caller = CallerModel(CallScript(to='fork', keep_heard=True), sine(caller_hz, 30))
    ch = sim.create_channel(direction='inbound', caller_number='15551230001', destination='fork',
                            dialplan=[('answer', ''), ('endless_playback', 'tone_stream://%(1000,0,440);L=-1'),
                                      ('park', '')],
                            caller=caller)
    for _ in range(250):
        if ch.answered:
            break
        ch.wait_frame()
    assert ch.answered
    return ch, caller


@pytest.fixture(params=FLAVORS)
def env(request, tmp_path):
    sim = Simulator(esl=('127.0.0.1', 0), flavor=request.param).start()
    server = start_server()
    esl = ESL(sim.esl_address)
    ch, caller = start_call(sim)
    ch.temp_dir = str(tmp_path)
    yield sim, server, esl, ch, caller
    esl.close()
    sim.stop()
    server.stop()


def results(captures_dir, flavor):
    return json.loads((captures_dir / ('audio-fork-results-%s.json' % flavor)).read_text())


def peak_hz(samples, rate):
    spec = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    return np.argmax(spec) * rate / len(samples)


# ------------------------------------------------------------------ tests
def test_failure_table_replays_with_the_captured_replies(env, captures_dir):
    sim, server, esl, ch, _ = env
    cases = results(captures_dir, sim.flavor)['failure_cases']
    captured_uuid = cases[1]['api'].split()[1]
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    dead_port = s.getsockname()[1]
    s.close()
    seen_connect_failed = []
    for case in cases:
        api = case['api'].replace(captured_uuid, ch.uuid)
        api = api.replace('ws://127.0.0.1:8099/', 'ws://127.0.0.1:%d/' % dead_port)
        api = api.replace('ws://127.0.0.1:8090/', server.url('/'))
        reply = esl.api(api)
        assert reply == case['response'], (case['case'], reply)
        if case['event'] and case['event']['Event-Subclass'] == 'mod_audio_fork::connect_failed':
            ev = esl.wait_event(ch.uuid, 'mod_audio_fork::connect_failed', len(seen_connect_failed) + 1)[-1]
            assert ev['_body'] == case['event']['_body']
            assert ev['Event-Name'] == 'CUSTOM'
            seen_connect_failed.append(ev)
    # the table ends with start / second start / stop: nothing is left attached
    assert esl.api('uuid_audio_fork %s stop' % ch.uuid) == '-ERR Operation Failed\n'
    # /reject403, /noproto and /twice reached the server (the refused one and /twice2 did not)
    assert server.wait_connection(3) is not None
    assert sorted(c.path for c in server.connections) == ['/noproto', '/reject403', '/twice']


def test_stream_start_send_text_stop(env, captures_dir):
    sim, server, esl, ch, _ = env
    scen = results(captures_dir, sim.flavor)['scenarios'][0]
    metadata = '{"callSid":"%s","from":"+15551230001","to":"+15557654321"}' % ch.uuid
    assert esl.api('uuid_audio_fork %s start %s mono 8k %s' % (ch.uuid, server.url('/phaseA-mono8k'), metadata)) \
        == scen['api_start_response']
    ev = esl.wait_event(ch.uuid, 'mod_audio_fork::connect')[0]
    assert '_body' not in ev
    conn = server.wait_connection()
    # handshake as captured (the key differs)
    captured = scen['ws']['request_headers']
    assert conn.request_line == scen['ws']['request_line']
    assert [k for k, _ in conn.headers] == [k for k, _ in captured]
    assert [v for k, v in conn.headers if k != 'Sec-WebSocket-Key'] == \
        [v for k, v in captured if k != 'Sec-WebSocket-Key']
    assert conn.wait_until(lambda: len(conn.binaries) >= 50, 3)
    assert conn.messages[0][1] == 'text' and conn.messages[0][2] == metadata
    assert esl.api('uuid_audio_fork %s send_text {"event":"dtmf","digit":"5"}' % ch.uuid) == \
        scen['api_send_text_response']
    assert conn.wait_until(lambda: len(conn.texts) == 2)
    assert esl.api('uuid_audio_fork %s stop {"event":"stop","reason":"done"}' % ch.uuid) == scen['api_stop_response']
    assert conn.closed.wait(5)
    assert conn.texts[1:] == [t['text'] for t in scen['ws']['text_frames']][1:]
    assert (conn.close_code, conn.close_reason, conn.close_initiator) == (1000, '', 'client')
    assert conn.messages[-1][1] == 'text'   # the final text, then the close
    # 20 ms frames of 320 bytes; a module that fell behind (a loaded machine) sends what it buffered
    # in one message, as the real one does: whole frames, and 50 of them a second all the same
    sizes = [len(d) for _, d in conn.binaries]
    assert all(size % 320 == 0 for size in sizes) and sizes.count(320) >= 0.8 * len(sizes)
    times = [t for t, _ in conn.binaries]
    frames = sum(sizes[1:]) / 320
    assert frames / (times[-1] - times[0]) == pytest.approx(50.0, rel=0.1)
    assert float(np.median(np.diff(times) * 1000)) == pytest.approx(20.0, abs=3.0)
    # no event for a close FreeSWITCH started (events arrive in order: hang up and wait for the last one)
    ch.hangup('NORMAL_CLEARING')
    esl.wait_event(ch.uuid, 'CHANNEL_HANGUP_COMPLETE')
    assert [e['Event-Subclass'] for e in esl.fork_events(ch.uuid)] == ['mod_audio_fork::connect']


def test_frame_sizes_rates_and_channels(env, captures_dir):
    sim, server, esl, ch, _ = env
    rows = []
    for scen in results(captures_dir, sim.flavor)['scenarios']:
        if not scen['name'].startswith('B-') or 'analysis' not in scen:
            continue
        parts = scen['api_start'].split()
        mix, rate = parts[4], parts[5]
        if mix not in ('mono', 'mixed', 'stereo'):
            continue
        counts = scen['analysis']['size_counts']
        size = max(counts, key=counts.get)   # a rare coalesced double frame was captured too
        rows.append((scen['name'], mix, rate, int(size), scen['analysis']['channel_stats']))
    assert len(rows) >= 8
    # all of them at once, one bug each (two simultaneous bugs were captured)
    for name, mix, rate, _, _ in rows:
        assert esl.api('uuid_audio_fork %s start %s %s %s %s' % (ch.uuid, server.url('/' + name), mix, rate, name)) \
            == '+OK Success\n'
    conns = {}
    for i in range(len(rows)):
        c = server.wait_connection(i + 1)
        conns[c.path[1:]] = c
    for name, mix, rate, size, stats in rows:
        c = conns[name]
        assert c.wait_until(lambda: len(c.binaries) >= 40, 4), name
    for name, mix, rate, size, stats in rows:
        assert esl.api('uuid_audio_fork %s stop %s' % (ch.uuid, name)) == '+OK Success\n'
    for name, mix, rate, size, stats in rows:
        c = conns[name]
        assert c.closed.wait(5)
        # one frame per message; frames read before the socket opened wait in the bug's buffer and
        # leave together in the first message (a coalesced double frame was captured too)
        sizes = [len(d) for _, d in c.binaries]
        assert set(sizes[1:]) == {size} and sizes[0] % size == 0, (name, sizes[:3])
        assert c.close_code == 1000
        pcm = np.frombuffer(b''.join(d for _, d in c.binaries[5:]), dtype='<i2')
        out_rate = 16000 if rate in ('16k', '16000') else 8000
        if mix == 'stereo':
            left, right = pcm[0::2], pcm[1::2]
            # left = what the caller says (300 Hz here), right = what the caller hears (440 Hz tone)
            assert abs(peak_hz(left, out_rate) - 300) < 15, name
            assert abs(peak_hz(right, out_rate) - 440) < 15, name
            assert len(stats) == 2
        elif mix == 'mixed':
            spec = np.abs(np.fft.rfft(pcm.astype(float)))
            freqs = np.fft.rfftfreq(len(pcm), 1 / out_rate)
            near = lambda f: spec[np.abs(freqs - f) < 10].max()  # noqa: E731
            assert near(300) > 0.3 * spec.max() and near(440) > 0.3 * spec.max(), name
        else:
            assert abs(peak_hz(pcm, out_rate) - 300) < 15, name
            spec = np.abs(np.fft.rfft(pcm.astype(float)))
            freqs = np.fft.rfftfreq(len(pcm), 1 / out_rate)
            assert spec[np.abs(freqs - 440) < 10].max() < 0.05 * spec.max(), name


def test_hangup_closes_with_1000_and_no_disconnect_event(env):
    sim, server, esl, ch, _ = env
    assert esl.api('uuid_audio_fork %s start %s mono 8k {"scenario":"hangup"}' % (ch.uuid, server.url('/h'))) \
        == '+OK Success\n'
    conn = server.wait_connection()
    assert conn.wait_until(lambda: len(conn.binaries) >= 5)
    ch.hangup('NORMAL_CLEARING')
    assert conn.closed.wait(5)
    assert (conn.close_code, conn.close_initiator) == (1000, 'client')
    esl.wait_event(ch.uuid, 'CHANNEL_HANGUP_COMPLETE')
    assert [e['Event-Subclass'] for e in esl.fork_events(ch.uuid)] == ['mod_audio_fork::connect']


def test_server_close_fires_disconnect_and_the_bug_stays(env, captures_dir):
    sim, server, esl, ch, _ = env
    after = results(captures_dir, sim.flavor)['after_server_close']
    assert esl.api('uuid_audio_fork %s start %s mono 8k' % (ch.uuid, server.url('/srvclose'))) == '+OK Success\n'
    conn = server.wait_connection()
    assert conn.wait_until(lambda: len(conn.binaries) >= 3)
    conn.close(1000, 'bye from server')
    ev = esl.wait_event(ch.uuid, 'mod_audio_fork::disconnect')[0]
    assert '_body' not in ev
    assert conn.closed.wait(5)
    assert conn.close_code == 1000
    assert esl.api('uuid_audio_fork %s send_text {"after":"close"}' % ch.uuid) == '+OK Success\n'
    assert esl.api('uuid_audio_fork %s start %s mono 8k' % (ch.uuid, server.url('/again'))) == \
        after['start_again_without_stop']
    assert esl.api('uuid_audio_fork %s stop' % ch.uuid) == after['stop_response']
    assert len(server.connections) == 1


def test_pause_resume_and_graceful_shutdown(env, captures_dir):
    sim, server, esl, ch, _ = env
    assert esl.api('uuid_audio_fork %s start %s mono 8k' % (ch.uuid, server.url('/pr'))) == '+OK Success\n'
    conn = server.wait_connection()
    assert conn.wait_until(lambda: len(conn.binaries) >= 5)
    assert esl.api('uuid_audio_fork %s pause' % ch.uuid) == '+OK Success\n'
    paused_at = time.monotonic()
    n = len(conn.binaries)
    assert ch.wait_frames(15)   # 300 ms of media ticks
    assert len(conn.binaries) <= n + 1
    assert esl.api('uuid_audio_fork %s resume' % ch.uuid) == '+OK Success\n'
    assert conn.wait_until(lambda: len(conn.binaries) >= n + 5)
    times = [t for t, _ in conn.binaries]
    assert 0.28 <= max(np.diff(times)) < 1.0
    assert conn.texts == []
    # graceful-shutdown: a zero-length frame; later send_text / stop give another one each, no close
    marks = next(s for s in results(captures_dir, sim.flavor)['scenarios'] if s['name'] == 'B-graceful-shutdown')
    assert esl.api('uuid_audio_fork %s graceful-shutdown' % ch.uuid) == marks['marks']['graceful_resp']
    assert conn.wait_until(lambda: any(len(d) == 0 for _, d in conn.binaries))
    count = len(conn.binaries)
    assert esl.api('uuid_audio_fork %s send_text {"x":1}' % ch.uuid) == marks['marks']['send_text_after_graceful_resp']
    assert conn.wait_until(lambda: len(conn.binaries) == count + 1)
    assert esl.api('uuid_audio_fork %s stop' % ch.uuid) == marks['marks']['stop_resp']
    assert conn.wait_until(lambda: len(conn.binaries) == count + 2)
    assert [len(d) for _, d in conn.binaries[-3:]] == [0, 0, 0]
    assert not conn.closed.wait(0.3)        # FreeSWITCH never closed it
    assert conn.texts == []
    assert paused_at


def play_audio_messages():
    raw = sine(1000, 0.5).astype('<i2').tobytes()
    bio = io.BytesIO()
    with wave.open(bio, 'wb') as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(sine(1000, 0.5, rate=16000).astype('<i2').tobytes())
    return [
        json.dumps({'type': 'playAudio', 'data': {'audioContentType': 'raw', 'sampleRate': 8000,
                    'audioContent': base64.b64encode(raw).decode(), 'textContent': 'raw 8k tone'}},
                   separators=(',', ':')),
        json.dumps({'type': 'playAudio', 'data': {'audioContentType': 'wave',
                    'audioContent': base64.b64encode(bio.getvalue()).decode(), 'textContent': 'wav 16k tone'}},
                   separators=(',', ':')),
    ]


def test_server_messages_become_events(env, captures_dir):
    sim, server, esl, ch, _ = env
    scen = next(s for s in results(captures_dir, sim.flavor)['scenarios'] if s['name'] == 'C-server-messages')
    sent = [t['text'] for t in scen['ws']['text_frames'] if t['dir'] == 'server->fs']
    sent[0:2] = play_audio_messages()
    expected = [(e['Event-Subclass'], e.get('_body')) for e in scen['esl_events']
                if e.get('Event-Subclass', '').startswith('mod_audio_fork::') and
                e['Event-Subclass'] != 'mod_audio_fork::connect']
    assert esl.api('uuid_audio_fork %s start %s mono 8k {"scenario":"srvmsgs"}' % (ch.uuid, server.url('/srv'))) \
        == '+OK Success\n'
    conn = server.wait_connection()
    esl.wait_event(ch.uuid, 'mod_audio_fork::connect')
    for text in sent:
        conn.send_text(text)
    conn.send_bytes(b'\x00' * 1600)
    conn.send_text('{"type":"transcription","data":{"last":true}}')  # a marker that all was processed
    esl.wait_event(ch.uuid, 'mod_audio_fork::transcription', 2)
    conn.close(1000, 'server done')
    esl.wait_event(ch.uuid, 'mod_audio_fork::disconnect', 2)
    got = [(e['Event-Subclass'], e.get('_body')) for e in esl.fork_events(ch.uuid)][1:]
    got = [g for g in got if g[1] != '{"last":true}']
    assert [g[0] for g in got] == [e[0] for e in expected]
    files = []
    for (sub, body), (esub, ebody) in zip(got, expected):
        if sub == 'mod_audio_fork::play_audio':
            b, eb = json.loads(body), json.loads(ebody)
            assert list(b) == list(eb)            # same keys, same order, no audioContent
            assert {k: v for k, v in b.items() if k != 'file'} == {k: v for k, v in eb.items() if k != 'file'}
            ext = eb['file'].rsplit('.tmp', 1)[1]
            assert b['file'].startswith(os.path.join(ch.temp_dir, ch.uuid + '_'))
            assert b['file'].endswith('.tmp' + ext)
            files.append(b['file'])
        else:
            assert body == ebody, sub
    captured_sizes = [f['size'] for f in scen['play_audio_files']]
    assert [os.path.getsize(f) for f in files] == captured_sizes
    assert esl.api('uuid_audio_fork %s stop' % ch.uuid) == '+OK Success\n'
    assert not any(os.path.exists(f) for f in files)


def test_kill_audio_breaks_playback(env):
    sim, server, esl, ch, _ = env
    assert esl.api('uuid_audio_fork %s start %s mono 8k' % (ch.uuid, server.url('/kill'))) == '+OK Success\n'
    conn = server.wait_connection()
    esl.wait_event(ch.uuid, 'mod_audio_fork::connect')
    conn.send_text('{"type":"killAudio"}')
    esl.wait_event(ch.uuid, 'mod_audio_fork::kill_audio')
    stop = esl.wait_event(ch.uuid, 'PLAYBACK_STOP')[0]
    assert stop['Playback-Status'] == 'break'


def test_basic_auth_and_connect_failed_reasons(env):
    sim, server, esl, ch, _ = env
    ch.variables['MOD_AUDIO_BASIC_AUTH_USERNAME'] = 'fork'
    ch.variables['MOD_AUDIO_BASIC_AUTH_PASSWORD'] = 'secret'
    assert esl.api('uuid_audio_fork %s start %s mono 8k' % (ch.uuid, server.url('/auth?x=1'))) == '+OK Success\n'
    conn = server.wait_connection()
    assert conn.request_line == 'GET /auth?x=1 HTTP/1.1'
    assert conn.headers[-1] == ('Authorization', 'Basic ' + base64.b64encode(b'fork:secret').decode())
    assert esl.api('uuid_audio_fork %s start %s mono 8k b2' % (ch.uuid, server.url('/wrongproto'))) == '+OK Success\n'
    ev = esl.wait_event(ch.uuid, 'mod_audio_fork::connect_failed')[0]
    assert ev['_body'] == '{"reason":"HS: PROTOCOL malformed"}'
    assert esl.api('uuid_audio_fork %s stop b2' % ch.uuid) == '+OK Success\n'
    assert esl.api('uuid_audio_fork %s stop' % ch.uuid) == '+OK Success\n'
    assert conn.closed.wait(5)


def test_buffer_overrun_fires_once(tmp_path, monkeypatch):
    monkeypatch.setenv('MOD_AUDIO_FORK_BUFFER_SECS', '1')
    # a host whose kernel send buffer stays small (tcp_wmem): FreeSWITCH's own is megabytes
    monkeypatch.setenv('SWITCH_SIM_FORK_SNDBUF', '1040')
    sim = Simulator(esl=('127.0.0.1', 0), flavor='jambonz').start()
    server = start_server(slow_paths=['/slow'])
    esl = ESL(sim.esl_address)
    try:
        ch, _ = start_call(sim)
        assert esl.api('uuid_audio_fork %s start %s stereo 16k' % (ch.uuid, server.url('/slow'))) == '+OK Success\n'
        ev = esl.wait_event(ch.uuid, 'mod_audio_fork::buffer_overrun', timeout=8)[0]
        assert '_body' not in ev
        assert ch.wait_frames(60)     # keeps overflowing: still one event
        assert len([e for e in esl.fork_events(ch.uuid)
                    if e['Event-Subclass'] == 'mod_audio_fork::buffer_overrun']) == 1
    finally:
        esl.close()
        sim.stop()
        server.stop()


@pytest.mark.parametrize('rate', [8000, 16000])
def test_bidirectional_audio_and_marks(tmp_path, captures_dir, rate):
    sim = Simulator(esl=('127.0.0.1', 0), flavor='jambonz').start()
    server = start_server()
    esl = ESL(sim.esl_address)
    try:
        ch, caller = start_call(sim)
        api = 'uuid_audio_fork %s start %s mono 8k audio_fork {"scenario":"bidi"} true true %d' % (
            ch.uuid, server.url('/bidi'), rate)
        assert esl.api(api) == '+OK Success\n'
        conn = server.wait_connection()
        esl.wait_event(ch.uuid, 'mod_audio_fork::connect')
        n_before = len(caller.heard)
        conn.send_text('{"type":"mark","data":{"name":"before-audio"}}')
        tone = sine(1000, 1.0, rate=rate, amp=8000).astype('<i2').tobytes()
        step = rate * 2 // 50
        for k in range(50):          # paced like a real-time source: one frame per media tick
            conn.send_bytes(tone[k * step:(k + 1) * step])
            assert ch.wait_frame()
        conn.send_text('{"type":"mark","data":{"name":"after-audio"}}')
        assert conn.wait_until(lambda: len(conn.texts) == 3, 3)
        assert conn.texts[1:] == ['{"type": "mark", "data": {"name":"before-audio", "event": "playout"}}',
                                  '{"type": "mark", "data": {"name":"after-audio", "event": "playout"}}']
        heard = np.frombuffer(b''.join(caller.heard[n_before:]), dtype='<i2').astype(float)
        spec = np.abs(np.fft.rfft(heard))
        freqs = np.fft.rfftfreq(len(heard), 1 / 8000)
        assert spec[np.abs(freqs - 1000) < 10].max() > 0.5 * spec[np.abs(freqs - 440) < 10].max()
        # upstream is unchanged: whole 320-byte frames (a fork that fell behind sends all it buffered as
        # one binary message, as mod_audio_fork's writable callback does: seen on a loaded machine)
        assert {len(d) % 320 for _, d in conn.binaries} == {0}
        # killAudio with queued audio: the pending mark is reported as cleared
        conn.send_bytes(sine(1000, 2.0, rate=rate).astype('<i2').tobytes())
        conn.send_text('{"type":"mark","data":{"name":"to-be-cleared"}}')
        assert ch.wait_frames(15)
        conn.send_text('{"type":"killAudio"}')
        assert conn.wait_until(lambda: len(conn.texts) == 4, 3)
        assert conn.texts[3] == '{"type": "mark", "data": {"name":"to-be-cleared", "event": "cleared"}}'
        esl.wait_event(ch.uuid, 'mod_audio_fork::kill_audio')
        # playAudio is not accepted in streaming mode
        conn.send_text(play_audio_messages()[0])
        conn.send_text('{"type":"error","data":{"code":1}}')
        esl.wait_event(ch.uuid, 'mod_audio_fork::error')
        assert not [e for e in esl.fork_events(ch.uuid) if e['Event-Subclass'] == 'mod_audio_fork::play_audio']
        assert esl.api('uuid_audio_fork %s stop_play' % ch.uuid) == '+OK Success\n'
        assert esl.api('uuid_audio_fork %s stop' % ch.uuid) == '+OK Success\n'
        assert conn.closed.wait(5)
    finally:
        esl.close()
        sim.stop()
        server.stop()


def test_drachtio_discards_binary_and_marks(tmp_path):
    sim = Simulator(esl=('127.0.0.1', 0), flavor='drachtio').start()
    server = start_server()
    esl = ESL(sim.esl_address)
    try:
        ch, caller = start_call(sim)
        assert esl.api('uuid_audio_fork %s stop_play' % ch.uuid) == '-ERR Operation Failed\n'
        assert esl.api('uuid_audio_fork %s start %s mono 8k' % (ch.uuid, server.url('/d'))) == '+OK Success\n'
        conn = server.wait_connection()
        esl.wait_event(ch.uuid, 'mod_audio_fork::connect')
        n_before = len(caller.heard)
        conn.send_text('{"type":"mark","data":{"name":"m"}}')
        conn.send_bytes(sine(1000, 1.0).astype('<i2').tobytes())
        conn.send_text('{"type":"error","data":{"code":1}}')
        esl.wait_event(ch.uuid, 'mod_audio_fork::error')
        assert ch.wait_frames(20)
        heard = np.frombuffer(b''.join(caller.heard[n_before:]), dtype='<i2').astype(float)
        spec = np.abs(np.fft.rfft(heard))
        freqs = np.fft.rfftfreq(len(heard), 1 / 8000)
        assert spec[np.abs(freqs - 1000) < 10].max() < 0.05 * spec[np.abs(freqs - 440) < 10].max()
        assert conn.texts == []
        assert esl.api('uuid_audio_fork %s stop' % ch.uuid) == '+OK Success\n'
    finally:
        esl.close()
        sim.stop()
        server.stop()


def test_play_audio_files_are_removed_at_hangup(env):
    sim, server, esl, ch, _ = env
    assert esl.api('uuid_audio_fork %s start %s mono 8k' % (ch.uuid, server.url('/files'))) == '+OK Success\n'
    conn = server.wait_connection()
    esl.wait_event(ch.uuid, 'mod_audio_fork::connect')
    conn.send_text(play_audio_messages()[0])
    body = json.loads(esl.wait_event(ch.uuid, 'mod_audio_fork::play_audio')[0]['_body'])
    assert body['file'].endswith('.tmp.r8') and os.path.getsize(body['file']) == 8000
    ch.hangup('NORMAL_CLEARING')
    esl.wait_event(ch.uuid, 'CHANNEL_HANGUP_COMPLETE')
    assert not os.path.exists(body['file'])
    assert conn.closed.wait(5) and conn.close_code == 1000


def test_bad_scheme_and_bad_rate(env):
    sim, server, esl, ch, _ = env
    # an unusable URL is only logged by the module: the start "succeeds" and the connection fails
    assert esl.api('uuid_audio_fork %s start foo://127.0.0.1/x mono 8k b1' % ch.uuid) == '+OK Success\n'
    ev = esl.wait_event(ch.uuid, 'mod_audio_fork::connect_failed')[0]
    assert ev['_body'] == '{"reason":"Unable to connect"}'
    assert esl.api('uuid_audio_fork %s stop b1' % ch.uuid) == '+OK Success\n'
    # a rate that is not a number cannot initialise the resampler
    assert esl.api('uuid_audio_fork %s start %s mono abc' % (ch.uuid, server.url('/r'))) == '-ERR Operation Failed\n'
    # a rate that is not a multiple of 8000 is only logged: frames of rate/50 samples
    assert esl.api('uuid_audio_fork %s start %s mono 12000 b2' % (ch.uuid, server.url('/r12'))) == '+OK Success\n'
    conn = server.wait_connection()
    assert conn.wait_until(lambda: len(conn.binaries) >= 5)
    assert {len(d) % 480 for _, d in conn.binaries} == {0}   # whole frames (one message or more each)
    assert esl.api('uuid_audio_fork %s stop b2' % ch.uuid) == '+OK Success\n'
    assert conn.closed.wait(5)
