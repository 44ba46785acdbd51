"""Bidirectional Vobiz <Stream> on the simulator, driven by real app-side WebSockets: playAudio in
every format reaching what the caller hears, checkpoint/playedStream timing (after playout, at once
when idle, never after clearAudio), clearAudio/clearedAudio, the app's `stop` (socket closes, next
verb runs, StopStream), DTMF to the app, and <Record> with a sibling or nested <Stream> recording
both directions (caller left, the app's audio right). Several calls on one stack at once."""
import json
import time
from pathlib import Path

import gevent
import numpy as np
import soundfile

from harness import Stack
from stream_scenarios import (Calls, b64, messages, noise, tone, tone_power, wait_until, windows_with,
                              write_wav)
from wsapp import AppServer as WsApp


def _start_of(conn):
    conn.wait_for(lambda c: c.texts())
    start = json.loads(conn.texts()[0])
    assert start["event"] == "start"
    return start["start"]["streamId"]


def _events(conn, name):
    return [m for m in messages(conn) if m.get("event") == name]


def _acked(conn, name):
    return any(m.get("name") == name for m in _events(conn, "playedStream"))


def _play(conn, sid, samples, content_type, rate, with_sid=True, mulaw=False):
    from audio_fork_fakes import g711_ulaw_encode
    data = bytes(g711_ulaw_encode(int(v)) for v in samples) if mulaw else samples.astype("<i2").tobytes()
    msg = {"event": "playAudio", "media": {"contentType": content_type, "sampleRate": rate, "payload": b64(data)}}
    if with_sid:
        msg["streamId"] = sid
    conn.send_text(json.dumps(msg))


def _formats_app(conn, sim, log):
    """Idle checkpoint, a cleared play, four formats with checkpoints, then `stop`."""
    sid = _start_of(conn)
    t = time.monotonic()
    conn.send_text(json.dumps({"event": "checkpoint", "streamId": sid, "name": "idle"}))
    conn.wait_for(lambda c: _acked(c, "idle"), 3)
    log["idle_ack_s"] = time.monotonic() - t
    # 2 s of 600 Hz, a checkpoint behind it, then clearAudio once the caller hears it
    _play(conn, sid, tone(600, 2.0), "audio/x-l16", 8000)
    conn.send_text(json.dumps({"event": "checkpoint", "streamId": sid, "name": "never"}))
    wait_until(lambda: windows_with(sim.heard(), 600) >= 2, 5, "600 Hz heard")
    conn.send_text(json.dumps({"event": "clearAudio", "streamId": sid}))
    conn.wait_for(lambda c: _events(c, "clearedAudio"), 3)
    # four formats, 0.5 s each, sent at once (faster than real time), each followed by a checkpoint
    sent = {}
    _play(conn, sid, tone(800, 0.5), "audio/x-l16", 8000)
    conn.send_text(json.dumps({"event": "checkpoint", "streamId": sid, "name": "cp-800"}))
    sent["cp-800"] = time.monotonic()
    _play(conn, sid, tone(1000, 0.5, rate=16000), "audio/x-l16", "16000", with_sid=False)
    conn.send_text(json.dumps({"event": "checkpoint", "streamId": sid, "name": "cp-1000"}))
    _play(conn, sid, tone(1200, 0.5, rate=24000), "audio/x-l16", 24000)
    conn.send_text(json.dumps({"event": "checkpoint", "streamId": sid, "name": "cp-1200"}))
    _play(conn, sid, tone(1400, 0.5), "audio/x-mulaw", "8000", with_sid=False, mulaw=True)
    conn.send_text(json.dumps({"event": "checkpoint", "name": "cp-1400"}))
    sent["cp-1400"] = time.monotonic()
    conn.wait_for(lambda c: _acked(c, "cp-1400"), 6)
    log["heard_at_ack"] = len(sim.heard())
    acked = {}
    for m, at in zip(conn.texts(), conn.times):
        msg = json.loads(m)
        if msg.get("event") == "playedStream":
            acked[msg["name"]] = at
    log["ack_delay"] = {k: acked[k] - sent[k] for k in sent}
    log["order"] = [json.loads(m).get("name") for m in conn.texts() if json.loads(m).get("event") == "playedStream"]
    conn.send_text(json.dumps({"event": "stop", "streamId": sid}))
    conn.closed.wait(5)


def _reply_app(conn, freq=1000.0):
    """Plays one second of `freq` back, waits for its checkpoint, then stops the stream."""
    sid = _start_of(conn)
    _play(conn, sid, tone(freq, 1.0), "audio/x-l16", 8000)
    conn.send_text(json.dumps({"event": "checkpoint", "streamId": sid, "name": "reply"}))
    conn.wait_for(lambda c: _acked(c, "reply"), 5)
    conn.send_text(json.dumps({"event": "stop", "streamId": sid}))
    conn.closed.wait(5)


def _dtmf_app(conn):
    sid = _start_of(conn)
    conn.wait_for(lambda c: len(_events(c, "dtmf")) >= 2, 6)
    conn.send_text(json.dumps({"event": "stop", "streamId": sid}))
    conn.closed.wait(5)


def _recording(stack, calls, uuid):
    stop = calls.wait_webhook(uuid, "RecordStop", 10)[0]
    path = Path(stack.data_dir) / "recordings" / f"{stop['RecordingID']}.wav"
    data, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    return data, rate


def test_vobiz_bidirectional_stream(tmp_path):
    apps = {name: WsApp().start() for name in ("formats", "sibling", "nested", "dtmf")}
    caller = write_wav(tmp_path / "caller300.wav", tone(300, 8.0, level=5000))
    quiet = write_wav(tmp_path / "quiet.wav", noise(8.0, level=300))
    log = {}
    try:
        with Stack() as stack:
            calls = Calls(stack)
            status = calls.url("/stream-status")
            stack.app.document("/after-stop", "<Response><Hangup/></Response>")
            bidi = f'bidirectional="true" keepCallAlive="true" statusCallbackUrl="{status}"'
            calls.add("3001", f'<Response><Stream {bidi}>{apps["formats"].url}</Stream>'
                              f'<Redirect>{calls.url("/after-stop")}</Redirect></Response>')
            record = (f'fileFormat="wav" maxLength="60" playBeep="false" redirect="false" '
                      f'callbackUrl="{calls.url("/record-stop")}"')
            calls.add("3002", f'<Response><Record recordSession="true" {record}/>'
                              f'<Stream {bidi}>{apps["sibling"].url}</Stream></Response>')
            calls.add("3003", f'<Response><Record {record}><Stream {bidi}>{apps["nested"].url}</Stream>'
                              f'</Record></Response>')
            calls.add("3004", f'<Response><Stream {bidi}>{apps["dtmf"].url}</Stream></Response>')
            sims = {
                "3001": stack.call(to="3001", audio=quiet, hangup_after=20, keep_heard=True),
                "3002": stack.call(to="3002", audio=caller, hangup_after=20, keep_heard=True),
                "3003": stack.call(to="3003", audio=caller, hangup_after=20, keep_heard=True),
                "3004": stack.call(to="3004", audio=quiet, hangup_after=20, dtmf=[("5", 1.0), ("#", 1.5)]),
            }
            workers = [gevent.spawn(_formats_app, apps["formats"].wait_connection(5), sims["3001"], log),
                       gevent.spawn(_reply_app, apps["sibling"].wait_connection(5), 1000.0),
                       gevent.spawn(_reply_app, apps["nested"].wait_connection(5), 1000.0),
                       gevent.spawn(_dtmf_app, apps["dtmf"].wait_connection(5))]
            gevent.joinall(workers, timeout=25, raise_error=True)
            summaries = {to: c.wait(15) for to, c in sims.items()}
            hooks = {}
            for to, c in sims.items():
                calls.wait_webhook(c.uuid, "StopStream", 5)
                hooks[to] = calls.webhooks(c.uuid)
            recordings = {to: _recording(stack, calls, sims[to].uuid) for to in ("3002", "3003")}
            after_stop = [r for r in stack.app.requests if r.path == "/after-stop"]
    finally:
        for app in apps.values():
            app.stop()

    for to, summary in summaries.items():
        assert summary["answered"] and summary["hangup_cause"] == "NORMAL_CLEARING", (to, summary)
        assert summary["duration_s"] < 15, (to, summary)   # ended by the document, not hangup_after

    # -- formats call --
    conn = apps["formats"].connections[0]
    assert log["idle_ack_s"] < 0.5                                 # idle: acked at once
    assert log["order"] == ["idle", "cp-800", "cp-1000", "cp-1200", "cp-1400"]   # "never" voided
    assert log["ack_delay"]["cp-800"] >= 0.4                       # after its 0.5 s played
    assert log["ack_delay"]["cp-1400"] >= 1.9                      # after all 2 s played
    cleared = [m for m in messages(conn) if m.get("event") == "clearedAudio"]
    assert len(cleared) == 1 and cleared[0]["streamId"] == json.loads(conn.texts()[0])["start"]["streamId"]
    assert conn.close_code == 1000                                 # the app's stop: callfork closes
    heard = sims["3001"].heard()
    for freq in (800, 1000, 1200, 1400):
        assert windows_with(heard, freq) >= 3, freq
    assert 2 <= windows_with(heard, 600) <= 10                     # the 2 s were cut short by clearAudio
    # playedStream only once the caller has heard the audio before it (the module's buffer included)
    last_1400 = max(i for i in range(0, len(heard) - 160, 160)
                    if np.sqrt(np.mean(heard[i:i + 160].astype(float) ** 2)) > 1000
                    and tone_power(heard[i:i + 160], 1400) > 0.5)
    assert last_1400 + 160 <= log["heard_at_ack"]
    assert len(after_stop) == 1                                    # the next verb ran after `stop`
    events = [h["Event"] for h in hooks["3001"]]
    assert events.count("StartStream") == 1 and events.count("StopStream") == 1
    assert events.count("ClearedAudio") == 1 and "DroppedStream" not in events
    played = [h["Name"] for h in hooks["3001"] if h["Event"] == "PlayedStream"]
    assert played == ["idle", "cp-800", "cp-1000", "cp-1200", "cp-1400"]
    assert events.index("StopStream") > events.index("ClearedAudio")

    # -- Record + Stream (sibling and nested): the file has the caller left and the app right --
    for to, (data, rate) in recordings.items():
        assert rate == 8000 and data.shape[1] == 2, to
        left, right = data[:, 0], data[:, 1]
        assert windows_with(left, 300) >= 8 and tone_power(left, 1000) < 0.05, to
        assert windows_with(right, 1000) >= 8 and tone_power(right, 300) < 0.05, to
        assert windows_with(sims[to].heard(), 1000) >= 8, to

    # -- DTMF from the caller reaches the app --
    conn = apps["dtmf"].connections[0]
    sid = json.loads(conn.texts()[0])["start"]["streamId"]
    dtmf = _events(conn, "dtmf")
    assert [d["dtmf"]["digit"] for d in dtmf] == ["5", "#"]
    for d in dtmf:
        assert d["streamId"] == sid and d["dtmf"]["track"] == "inbound" and d["dtmf"]["timestamp"].isdigit()
        assert isinstance(d["sequenceNumber"], int) and d["extra_headers"] == "{}"
    seqs = [m["sequenceNumber"] for m in messages(conn)]
    assert seqs == list(range(len(seqs)))
