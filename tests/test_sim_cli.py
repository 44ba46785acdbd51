"""`callfork sim serve` in a subprocess + `callfork sim call --json` against it, with a tiny
outbound controller written here; and the CLI's error exits."""
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sim_support import Controller, event_of, write_tone_wav
from switch_sim.cli import call_main

ROOT = Path(__file__).resolve().parent.parent


def _controller(esl, rec):
    esl.send('connect\n\n')
    esl.frame()
    for cmd in ('myevents', 'linger', 'sendmsg\ncall-command: execute\nexecute-app-name: answer\nevent-lock: true',
                'sendmsg\ncall-command: execute\nexecute-app-name: playback\n'
                'execute-app-arg: tone_stream://%(300,0,600)\nevent-lock: true',
                'sendmsg\ncall-command: execute\nexecute-app-name: hangup\nexecute-app-arg: USER_BUSY'):
        esl.send(cmd + '\n\n')
    rec['names'] = []
    while True:
        headers, body, _raw = esl.frame(timeout=10)
        if headers.get('Content-Type') == 'text/event-plain':
            rec['names'].append(event_of(body)['Event-Name'])
        if headers.get('Content-Type') == 'text/disconnect-notice':
            break
    esl.send('exit\n\n')
    esl.closed()


@pytest.fixture
def served():
    ctl = Controller(_controller)
    proc = subprocess.Popen(
        [sys.executable, '-c', 'import sys; from gevent import monkey; monkey.patch_all(); '
         'from switch_sim.cli import serve_main; sys.exit(serve_main(sys.argv[1:]))',
         '--esl', '127.0.0.1:0', '--socket', '%s:%d' % ctl.address],
        cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()      # the server prints where it listens once it is listening
    m = re.search(r'inbound ESL on ([\d.]+):(\d+)', line)
    assert m, (line, proc.stderr.read() if proc.poll() is not None else '')
    yield '%s:%s' % m.groups(), proc, ctl
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    ctl.stop()


def test_sim_call_json(served, capsys, tmp_path):
    esl, proc, ctl = served
    audio = write_tone_wav(tmp_path / 'caller.wav', 500, 1.0)
    heard = tmp_path / 'heard.wav'
    code = call_main(['--to', '15557654321', '--from', '15550001111', '--audio', audio, '--dtmf', '5@0.2',
                      '--save-heard', str(heard), '--json', '--esl', esl, '--timeout', '20'])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    summary = json.loads(out[-1])
    assert summary['answered'] is True
    assert summary['hangup_cause'] == 'USER_BUSY'
    assert re.fullmatch(r'[0-9a-f-]{36}', summary['uuid'])
    assert 0.2 < summary['duration_s'] < 10
    events = summary['events']
    assert events[0] == 'CHANNEL_CREATE' and events[-1] == 'CHANNEL_HANGUP_COMPLETE'
    for name in ('CHANNEL_ANSWER', 'PLAYBACK_START', 'PLAYBACK_STOP', 'CHANNEL_HANGUP'):
        assert name in events
    assert events.index('CHANNEL_ANSWER') < events.index('PLAYBACK_START') < events.index('CHANNEL_HANGUP')
    assert heard.exists()
    rec = ctl.result()
    assert rec['error'] is None
    # the controller only sent `myevents`: no PLAYBACK_* events reach it (they are not in that list)
    assert 'CHANNEL_EXECUTE' in rec['names'] and not any(n.startswith('PLAYBACK') for n in rec['names'])
    # readable output
    code = call_main(['--to', '15557654321', '--esl', esl, '--timeout', '20'])
    text = capsys.readouterr().out
    assert code == 0 and 'hangup cause: USER_BUSY' in text
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_sim_call_errors(served, capsys, tmp_path):
    esl, _proc, _ctl = served
    bad = tmp_path / 'bad.wav'
    bad.write_bytes(b'not a wav file at all')
    assert call_main(['--to', '1', '--audio', str(bad), '--esl', esl]) == 2
    assert 'not a readable audio file' in capsys.readouterr().err
    assert call_main(['--to', '1', '--dtmf', 'x', '--esl', esl]) == 2
    assert 'bad --dtmf' in capsys.readouterr().err


def test_sim_call_without_simulator(capsys):
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    assert call_main(['--to', '1', '--esl', '127.0.0.1:%d' % port, '--timeout', '2']) == 2
    assert 'cannot reach the simulator' in capsys.readouterr().err
