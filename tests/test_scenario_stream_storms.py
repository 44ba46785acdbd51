"""An app that floods its bidirectional Vobiz stream (issue 12) on the simulator: the status
webhooks stay few and carry the count of what they stand for (`Occurrences`), and nothing the app
sent is dropped unreported.

- checkpoints beyond the playout queue's cap (1,000 waiting for their audio) are voided, as on a
  clearAudio (no playedStream), and reported: a DegradedStream naming the checkpoint (the 1,000
  kept are voided by the clearAudio flood below, so no PlayedStream flood slows the test);
- a playAudio flood that overflows the playout queue on every message: one DegradedStream, then at
  most one per 10 s, the occurrences summed;
- clearAudio in a tight loop: a clearedAudio on the socket for each, the ClearedAudio webhooks
  coalesced (at most one per second), the occurrences summed;
- what is still counted when the stream ends is posted before its StopStream."""
import json

from websockets.frames import Frame, Opcode

from harness import Stack
from stream_scenarios import Calls, b64, messages, noise, tone, write_wav
from wsapp import AppServer as WsApp

CHECKPOINTS = 1003          # the queue keeps 1,000 behind their audio: 3 dropped
PLAYS = 50                  # each longer than the whole queue: each overflows it
CLEARS = 2000


def _ulaw(samples):
    import audioop
    return audioop.lin2ulaw(samples.astype("<i2").tobytes(), 2)


def _text(obj):
    return Frame(Opcode.TEXT, json.dumps(obj).encode())


def _named(conn, event):
    return [m.get("name") for m in messages(conn) if m.get("event") == event]


def _occurrences(hooks):
    return sum(int(h["Occurrences"]) for h in hooks)


def test_a_flooding_app_gets_few_webhooks_and_every_dropped_checkpoint_reported(tmp_path):
    app = WsApp().start()
    caller = write_wav(tmp_path / "caller.wav", noise(60.0, seed=9, level=300))
    try:
        # a 10 s playout queue: an 11 s playAudio overflows it whatever it holds
        with Stack(env={"CALLFORK_AUDIO_FORK_MAX_PLAYOUT_SECONDS": "10"}) as stack:
            calls = Calls(stack)
            calls.add("9201", f'<Response><Stream bidirectional="true" keepCallAlive="true" '
                              f'statusCallbackUrl="{calls.url("/stream-status")}">{app.url}</Stream></Response>')
            sim = stack.call(to="9201", audio=caller, hangup_after=120)
            conn = app.wait_connection(10)
            conn.wait_for(lambda c: c.texts())
            sid = json.loads(conn.texts()[0])["start"]["streamId"]

            def play(seconds):
                return _text({"event": "playAudio", "streamId": sid, "media": {
                    "contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": b64(_ulaw(tone(500, seconds)))}})

            # 9 s of audio, then more checkpoints behind it than the queue keeps
            conn.send(play(9.0), *[_text({"event": "checkpoint", "streamId": sid, "name": f"cp-{i}"})
                                   for i in range(CHECKPOINTS)])
            calls.wait_webhook(sim.uuid, "DegradedStream", 10)
            # the playAudio flood, then clearAudio in a tight loop (the first voids the 1,000 checkpoints)
            for _ in range(PLAYS // 10):
                conn.send(*[play(11.0) for _ in range(10)])
            for _ in range(CLEARS // 100):
                conn.send(*[_text({"event": "clearAudio", "streamId": sid}) for _ in range(100)])
            conn.wait_for(lambda c: sum(1 for m in messages(c) if m.get("event") == "clearedAudio") >= CLEARS, 60)
            conn.send_text(json.dumps({"event": "stop", "streamId": sid}))
            conn.closed.wait(10)
            summary = sim.wait(30)
            hangup = stack.app.wait_event("Hangup", timeout=60).form
            hooks = calls.webhooks(sim.uuid)
    finally:
        app.stop()

    assert summary["answered"] and hangup["HangupCauseCode"] == "4010"     # the app's stop ended the document
    stream_hooks = [h for h in hooks if h.get("StreamID") == sid]
    events = [h["Event"] for h in stream_hooks]
    assert events[0] == "StartStream" and events[-1] == "StopStream" and events.count("StopStream") == 1

    # -- checkpoints over the cap: voided on the socket, each reported by a DegradedStream --
    played = _named(conn, "playedStream")
    assert not [name for name in played if name in ("cp-1000", "cp-1001", "cp-1002")]
    assert played == [f"cp-{i}" for i in range(len(played))]       # none, unless the 9 s played out first
    assert [h["Name"] for h in stream_hooks if h["Event"] == "PlayedStream"] == played
    dropped = [h for h in stream_hooks if h["Event"] == "DegradedStream" and "checkpoint dropped" in h["Error"]]
    assert dropped and dropped[0]["Name"] == "cp-1000" and dropped[0]["Occurrences"] == "1"
    assert dropped[-1]["Name"] == "cp-1002" and '"cp-1002"' in dropped[-1]["Error"]
    assert _occurrences(dropped) == CHECKPOINTS - 1000

    # -- the playAudio flood: each message overflowed the queue; a few webhooks say how often --
    full = [h for h in stream_hooks if h["Event"] == "DegradedStream" and "playout queue full" in h["Error"]]
    assert full[0]["Occurrences"] == "1"
    assert _occurrences(full) == PLAYS and len(full) <= 5, [h["Occurrences"] for h in full]

    # -- clearAudio in a tight loop: answered on the socket each time, coalesced webhooks --
    assert sum(1 for m in messages(conn) if m.get("event") == "clearedAudio") == CLEARS
    cleared = [h for h in stream_hooks if h["Event"] == "ClearedAudio"]
    assert cleared[0]["Occurrences"] == "1"
    assert _occurrences(cleared) == CLEARS and len(cleared) < 60, len(cleared)

    # every kind of DegradedStream, and nothing else, is coalesced
    assert set(events) <= {"StartStream", "PlayedStream", "DegradedStream", "ClearedAudio", "StopStream"}
    assert all(h["Error"] == "" for h in stream_hooks if h["Event"] != "DegradedStream")
