"""How Vobiz streams live and end, on the simulator: background streams (two on one call, later verbs
run meanwhile), an app that refuses the upgrade (DroppedStream, the call goes on), an app that
closes mid-call with maxRetries (a new streamId and a new `start`, the old fork stopped first), an
app that stalls (DegradedStream; the other stream and the call unaffected), caller hangup (the
socket closes with 1000, no StopStream), and mod_audio_fork's connect_failed (DroppedStream, the
bug stopped after it)."""
import functools
import json

import verbs.streaming
from audio_fork import StreamSpec
from harness import Stack
from stream_scenarios import (Calls, bugs_of, fork_module, media, messages, noise, payload_bytes, pcm, tone,
                              wait_until, windows_with, write_wav)
from wsapp import AppServer as WsApp


def _sid(conn):
    conn.wait_for(lambda c: c.texts())
    return json.loads(conn.texts()[0])["start"]["streamId"]


def test_stream_lifecycle(tmp_path, monkeypatch):
    # a small app send queue and socket buffer, so a stalled app shows within a second
    monkeypatch.setattr(verbs.streaming, "StreamSpec",
                        functools.partial(StreamSpec, app_queue_messages=50, app_sndbuf=4096))
    apps = {"a": WsApp().start(), "b": WsApp().start(), "refuse": WsApp(reject_status=403).start(),
            "retry": WsApp().start(), "stall": WsApp(read=False, rcvbuf=4096).start(),
            "healthy": WsApp().start(), "hangup": WsApp().start()}
    caller = write_wav(tmp_path / "noise.wav", noise(10.0, seed=3))
    seen = {}
    try:
        with Stack() as stack:
            calls = Calls(stack)
            status = calls.url("/stream-status")
            long_tone = calls.serve_wav("/tone700.wav", tone(700, 1.5))
            longer_tone = calls.serve_wav("/tone900.wav", tone(900, 3.0))
            stack.app.document("/after-403", "<Response><Hangup/></Response>")
            stack.app.document("/after-retry", "<Response><Hangup/></Response>")
            cb = f'statusCallbackUrl="{status}"'
            calls.add("4001", f'<Response><Stream {cb}>{apps["a"].url}</Stream>'
                              f'<Stream audioTrack="both" {cb}>{apps["b"].url}</Stream>'
                              f'<Play>{long_tone}</Play></Response>')
            calls.add("4002", f'<Response><Stream {cb} bidirectional="true" keepCallAlive="true">'
                              f'{apps["refuse"].url}</Stream><Redirect>{calls.url("/after-403")}</Redirect></Response>')
            calls.add("4003", f'<Response><Stream {cb} bidirectional="true" keepCallAlive="true" maxRetries="2">'
                              f'{apps["retry"].url}</Stream><Redirect>{calls.url("/after-retry")}</Redirect></Response>')
            calls.add("4004", f'<Response><Stream {cb} audioTrack="both" contentType="audio/x-l16;rate=16000">'
                              f'{apps["stall"].url}</Stream><Stream {cb}>{apps["healthy"].url}</Stream>'
                              f'<Play>{longer_tone}</Play></Response>')
            calls.add("4006", f'<Response><Stream {cb} bidirectional="true" keepCallAlive="true">'
                              f'{apps["hangup"].url}</Stream></Response>')
            sims = {to: stack.call(to=to, audio=caller, hangup_after=(1.5 if to == "4006" else 15), keep_heard=True)
                    for to in ("4001", "4002", "4003", "4004", "4006")}

            # two background streams on one call: one media bug each, while <Play> runs
            a, b = apps["a"].wait_connection(5), apps["b"].wait_connection(5)
            sid_a, sid_b = _sid(a), _sid(b)
            seen["bugs_4001"] = bugs_of(stack, sims["4001"].uuid)
            seen["metadata"] = [fork_module(stack).sessions[(sims["4001"].uuid, bug)].metadata
                                for bug in seen["bugs_4001"]]

            # the app closes its first connection: a retry with a new stream id, then `stop`
            first = apps["retry"].wait_connection(5)
            sid_1 = _sid(first)
            first.wait_for(lambda c: len(c.messages) > 10)
            first.close(1000)
            wait_until(lambda: len(apps["retry"].connections) >= 2, 5, "the retry connection")
            second = apps["retry"].connections[1]
            sid_2 = _sid(second)
            wait_until(lambda: bugs_of(stack, sims["4003"].uuid) == [f"callfork_{sid_2}"], 3, "old bug stopped")
            second.wait_for(lambda c: len(c.messages) > 10)
            second.send_text(json.dumps({"event": "stop", "streamId": sid_2}))

            summaries = {to: c.wait(20) for to, c in sims.items()}
            for name in ("a", "b", "healthy", "hangup"):
                apps[name].connections[0].closed.wait(5)
            second.closed.wait(5)
            calls.wait_webhook(sims["4003"].uuid, "StopStream", 5)
            calls.wait_webhook(sims["4004"].uuid, "DegradedStream", 5)
            for to in ("4001", "4004", "4006"):
                stack.app.wait_for(lambda: any(r.path == "/hangup" and r.form.get("CallUUID") == sims[to].uuid
                                               for r in stack.app.requests), 10)
            hooks = {to: calls.webhooks(c.uuid) for to, c in sims.items()}
            paths = calls.paths()
    finally:
        for app in apps.values():
            app.stop()

    def events(to):
        return [(h["Event"], h["StreamID"]) for h in hooks[to] if "StreamID" in h]

    for to, summary in summaries.items():
        assert summary["answered"], to
    # -- two background streams --
    assert sid_a != sid_b
    assert seen["bugs_4001"] == sorted([f"callfork_{sid_a}", f"callfork_{sid_b}"])
    for bug, meta in zip(seen["bugs_4001"], seen["metadata"]):   # the module got compact metadata (no spaces)
        assert " " not in meta and json.loads(meta) == {"streamId": bug[len("callfork_"):],
                                                        "callUuid": sims["4001"].uuid}
    msgs_a, msgs_b = messages(a), messages(b)
    assert msgs_a[0]["start"]["callId"] == msgs_b[0]["start"]["callId"] == sims["4001"].uuid
    assert msgs_b[0]["start"]["tracks"] == ["inbound", "outbound"]
    assert windows_with(pcm(payload_bytes(media(msgs_b, "outbound"))), 700) >= 10   # the <Play> ran meanwhile
    assert a.close_code == 1000 and b.close_code == 1000
    assert sorted(events("4001")) == sorted([("StartStream", sid_a), ("StartStream", sid_b)])  # no StopStream

    # -- the app refuses the upgrade: DroppedStream with the error, the call goes on --
    dropped = [h for h in hooks["4002"] if h.get("Event") == "DroppedStream"]
    assert [e for e, _ in events("4002")] == ["DroppedStream"]
    assert "403" in dropped[0]["Error"] and dropped[0]["ServiceURL" if "ServiceURL" in dropped[0] else "Event"]
    assert "/after-403" in paths

    # -- the app drops the socket: DroppedStream, a retry with a new stream id and a new start --
    assert sid_1 != sid_2
    assert json.loads(second.texts()[0])["start"]["callId"] == json.loads(first.texts()[0])["start"]["callId"]
    assert json.loads(second.texts()[0])["sequenceNumber"] == 0
    assert events("4003") == [("StartStream", sid_1), ("DroppedStream", sid_1), ("StartStream", sid_2),
                              ("StopStream", sid_2)]
    assert second.close_code == 1000 and "/after-retry" in paths

    # -- a stalled app: DegradedStream for it; the other stream lost nothing and the call went on --
    degraded = [h for h in hooks["4004"] if h.get("Event") == "DegradedStream"]
    assert degraded and degraded[0]["Error"] == "connection degraded"
    healthy = messages(apps["healthy"].connections[0])
    frames = media(healthy)
    assert [m["chunk"] if "chunk" in m else m["media"]["chunk"] for m in frames] == list(range(1, len(frames) + 1))
    assert len(frames) >= 50 * 2.5                                   # the whole 3 s <Play>, 50 frames/s
    assert windows_with(sims["4004"].heard(), 900) >= 25
    assert summaries["4004"]["hangup_cause"] == "NORMAL_CLEARING" and summaries["4004"]["duration_s"] < 8

    # -- caller hangup mid-stream: the socket closes with 1000, no StopStream --
    assert apps["hangup"].connections[0].close_code == 1000
    assert [e for e, _ in events("4006")] == ["StartStream"]


def test_module_connect_failed(tmp_path):
    """mod_audio_fork cannot reach the relay: connect_failed → DroppedStream (each retry too), the
    bug (which stays attached after connect_failed) is stopped, the document goes on."""
    app = WsApp().start()
    try:
        with Stack() as stack:
            relay = stack.service.relay
            closed = WsApp().start()
            dead_port = closed.server.address[1]
            closed.stop()
            real = relay.url_for
            relay.url_for = lambda sid, token: real(sid, token).replace(f":{relay.address[1]}/", f":{dead_port}/")
            calls = Calls(stack)
            stack.app.document("/after-cf", "<Response><Hangup/></Response>")
            calls.add("5001", f'<Response><Stream statusCallbackUrl="{calls.url("/stream-status")}" maxRetries="1">'
                              f'{app.url}</Stream><Wait length="2"/><Redirect>{calls.url("/after-cf")}</Redirect>'
                              f'</Response>')
            sim = stack.call(to="5001", hangup_after=10)
            dropped = calls.wait_webhook(sim.uuid, "DroppedStream", 10, count=2)
            summary = sim.wait(10)
            bugs_after = bugs_of(stack, sim.uuid)
            paths = calls.paths()
    finally:
        app.stop()
    assert summary["answered"]
    assert len(dropped) == 2 and dropped[0]["StreamID"] != dropped[1]["StreamID"]
    assert all("Unable to connect" in d["Error"] for d in dropped), dropped
    assert "CUSTOM mod_audio_fork::connect_failed" in summary["events"]
    assert bugs_after == []
    assert "/after-cf" in paths
    assert all(not c.texts() for c in app.connections)              # never a `start` without audio
