"""The drachtio build of mod_audio_fork on the simulator: one-way audio only, so a bidirectional
<Stream>'s playAudio falls back to WAV files played on the channel (uuid_broadcast): the caller
hears it, the checkpoint is acked after it played, clearAudio cuts it (uuid_break), the inbound
track still flows byte for byte, and the app's stop ends the stream."""
import json
import time

import numpy as np

from harness import Stack
from stream_scenarios import (Calls, assert_exact, b64, media, messages, noise, payload_bytes, pcm, tone,
                              wait_until, windows_with, write_wav)
from wsapp import AppServer as WsApp


def test_drachtio_bidirectional_stream_plays_files(tmp_path):
    caller_noise = noise(8.0, seed=9, level=1000)
    ws = WsApp().start()
    log = {}
    try:
        with Stack(flavor="drachtio") as stack:
            calls = Calls(stack)
            stack.app.document("/after", "<Response><Hangup/></Response>")
            calls.add("8001", f'<Response><Stream bidirectional="true" keepCallAlive="true" '
                              f'statusCallbackUrl="{calls.url("/stream-status")}">{ws.url}</Stream>'
                              f'<Redirect>{calls.url("/after")}</Redirect></Response>')
            sim = stack.call(to="8001", audio=write_wav(tmp_path / "n.wav", caller_noise), hangup_after=15,
                             keep_heard=True)
            conn = ws.wait_connection(5)
            conn.wait_for(lambda c: c.texts())
            sid = json.loads(conn.texts()[0])["start"]["streamId"]
            for chunk in np.array_split(tone(900, 1.0), 25):          # 40 ms chunks, faster than real time
                conn.send_text(json.dumps({"event": "playAudio", "streamId": sid, "media": {
                    "contentType": "audio/x-l16", "sampleRate": 8000, "payload": b64(chunk)}}))
            sent = time.monotonic()
            conn.send_text(json.dumps({"event": "checkpoint", "streamId": sid, "name": "tone"}))
            conn.wait_for(lambda c: any(json.loads(t).get("name") == "tone" for t in c.texts()), 5)
            log["ack_s"] = time.monotonic() - sent
            log["heard_900_at_ack"] = windows_with(sim.heard(), 900)
            conn.send_text(json.dumps({"event": "playAudio", "streamId": sid, "media": {
                "contentType": "audio/x-l16", "sampleRate": 16000, "payload": b64(tone(1300, 2.0, rate=16000))}}))
            conn.send_text(json.dumps({"event": "checkpoint", "streamId": sid, "name": "never"}))
            wait_until(lambda: windows_with(sim.heard(), 1300) >= 2, 5, "1300 Hz heard")
            conn.send_text(json.dumps({"event": "clearAudio", "streamId": sid}))
            conn.wait_for(lambda c: any(json.loads(t).get("event") == "clearedAudio" for t in c.texts()), 3)
            conn.send_text(json.dumps({"event": "stop", "streamId": sid}))
            summary = sim.wait(15)
            calls.wait_webhook(sim.uuid, "StopStream", 5)
            hooks = [h.get("Event") for h in calls.webhooks(sim.uuid) if "StreamID" in h]
            paths = calls.paths()
    finally:
        ws.stop()
    assert summary["answered"] and summary["hangup_cause"] == "NORMAL_CLEARING"
    assert "/after" in paths                                          # the next verb ran after stop
    heard = sim.heard()
    assert windows_with(heard, 900) >= 9 and log["heard_900_at_ack"] >= 8   # (nearly) all of it, before the ack
    assert log["ack_s"] >= 0.9
    assert 2 <= windows_with(heard, 1300) <= 10                        # cut short by clearAudio
    msgs = messages(conn)
    assert not [m for m in msgs if m.get("name") == "never"]
    assert assert_exact(pcm(payload_bytes(media(msgs))), caller_noise, what="drachtio inbound") > 8000
    assert hooks == ["StartStream", "PlayedStream", "ClearedAudio", "StopStream"]
