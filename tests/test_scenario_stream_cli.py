"""The issue's done-when, with the real CLI in subprocesses: `callfork sim serve`, `callfork serve
--config ...`, and `callfork sim call --audio speech.wav --save-heard heard.wav --json` against
`<Response><Stream bidirectional="true" keepCallAlive="true">ws://...</Stream></Response>` whose app
echoes the caller's audio back: heard.wav contains the caller's speech."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import gevent
import numpy as np
import requests
import soundfile

from callfork.demo import caller_voice
from harness import AppServer, free_port
from stream_scenarios import b64, payload_bytes
from wsapp import AppServer as WsApp
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
CALLFORK = [sys.executable, "-c", "import sys; from callfork.cli import main; sys.exit(main())"]


def _echo(conn, seconds=4.0):
    """Echo the media back as playAudio: the first 10 frames (200 ms) at once, then every 5 frames;
    after `seconds` of audio, checkpoint, then stop. The first message carries one chunk more than
    the app's 100 ms cadence needs, as a real echo bot's jitter buffer would: echoing each 100 ms
    the moment it is complete leaves the playout no slack at all, and a chunk that arrives a few ms
    after the previous one has played out is a 20 ms gap of silence in what the caller hears
    (measured: that is how this test failed in 1-2 runs of 6)."""
    conn.wait_for(lambda c: c.texts())
    sid = json.loads(conn.texts()[0])["start"]["streamId"]
    done, frames = 0, 0
    while frames < seconds * 50:
        n = 10 if done == 0 else 5
        conn.wait_for(lambda c: len(c.texts()) > 1 + done + n - 1, 5)
        batch = [json.loads(t) for t in conn.texts()[1 + done:1 + done + n]]
        done += n
        media = [m for m in batch if m.get("event") == "media"]
        frames += len(media)
        conn.send_text(json.dumps({"event": "playAudio", "streamId": sid, "media": {
            "contentType": "audio/x-l16", "sampleRate": 8000, "payload": b64(payload_bytes(media))}}))
    conn.send_text(json.dumps({"event": "checkpoint", "streamId": sid, "name": "echoed"}))
    conn.wait_for(lambda c: any(json.loads(t).get("event") == "playedStream" for t in c.texts()), 5)
    conn.send_text(json.dumps({"event": "stop", "streamId": sid}))
    conn.closed.wait(5)


def _wait_http(url, timeout=20):
    def up():
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False
    wait_until(up, timeout, f"{url} coming up", interval=0.1)


def test_cli_echo_stream_heard_contains_the_callers_speech(tmp_path):
    speech = caller_voice(tmp_path / "speech.wav", seconds=6.0)
    heard_path = tmp_path / "heard.wav"
    ws = WsApp().start()
    app = AppServer().start()
    app.document("/answer", f'<Response><Stream bidirectional="true" keepCallAlive="true">{ws.url}</Stream></Response>')
    ports = {n: free_port() for n in ("esl", "outbound", "http", "relay")}
    config = tmp_path / "callfork.toml"
    config.write_text(f"""
[freeswitch]
esl_host = "127.0.0.1"
esl_port = {ports['esl']}
[server]
outbound_listen = "127.0.0.1:{ports['outbound']}"
http_listen = "127.0.0.1:{ports['http']}"
relay_listen = "127.0.0.1:{ports['relay']}"
public_url = "http://127.0.0.1:{ports['http']}"
auth_token = "cli-token"
data_dir = "{tmp_path / 'var'}"
[[numbers]]
number = "*"
answer_url = "{app.url('/answer')}"
hangup_url = "{app.url('/hangup')}"
""")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("CALLFORK_CONFIG", None)
    logs = {n: open(tmp_path / f"{n}.log", "w") for n in ("sim", "serve")}
    procs = []
    try:
        procs.append(subprocess.Popen(CALLFORK + ["sim", "serve", "--esl", f"127.0.0.1:{ports['esl']}",
                                                  "--socket", f"127.0.0.1:{ports['outbound']}"],
                                      cwd=tmp_path, env=env, stdout=logs["sim"], stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen(CALLFORK + ["--config", str(config), "serve"], cwd=tmp_path, env=env,
                                      stdout=logs["serve"], stderr=subprocess.STDOUT))
        _wait_http(f"http://127.0.0.1:{ports['http']}/healthz")
        echo = gevent.spawn(lambda: _echo(ws.wait_connection(30)))
        out = subprocess.run(CALLFORK + ["sim", "call", "--esl", f"127.0.0.1:{ports['esl']}", "--to", "1000",
                                         "--audio", str(speech), "--save-heard", str(heard_path), "--json",
                                         "--timeout", "40"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        echo.get(timeout=10)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs.values():
            f.close()
        ws.stop()
        app.stop()
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["answered"] is True and summary["hangup_cause"] == "NORMAL_CLEARING", summary
    assert "CUSTOM mod_audio_fork::connect" in summary["events"]

    spoken, rate = soundfile.read(str(speech), dtype="int16")
    heard, heard_rate = soundfile.read(str(heard_path), dtype="int16")
    assert rate == heard_rate == 8000
    # find the echo delay by cross-correlation, then compare: the heard audio is the caller's speech
    a = heard.astype(float) - heard.mean()
    b = spoken.astype(float)[:len(heard)]
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    xc = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    lag = int(np.argmax(xc[:len(a)]))
    assert 0 < lag < 8000 * 2, lag                      # echoed within 2 s
    overlap = min(len(heard) - lag, len(spoken), 8000 * 3)
    assert overlap >= 8000 * 3
    echoed, original = heard[lag:lag + overlap], spoken[:overlap]
    first = int(np.flatnonzero(echoed)[0])             # the speech before the stream connected is not echoed
    assert first < 8000 // 2, first
    assert np.array_equal(echoed[first:], original[first:])   # L16 8 kHz both ways: sample for sample
