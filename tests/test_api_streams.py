"""Streams through the REST API on a live call (https://docs.vobiz.ai/audio-streams/start-audio-stream), and the call record the API
returns afterwards (call, verbs, events, streams, recordings, webhooks with their status codes)."""
import json

import requests

from api_support import error_json, parse_metrics
from harness import Stack
from wsapp import AppServer as WsApp

DOCUMENT = """<Response>
  <Speak>Hello.</Speak>
  <Record recordSession="true" fileFormat="wav" redirect="false" maxLength="60"
          action="{app}/rec-action" callbackUrl="{app}/rec-stop"/>
  <Wait length="30"/>
</Response>"""


def _api(stack, method, path, **kw):
    return requests.request(method, stack.api_url(path), headers=stack.api_headers(), timeout=10, **kw)


def _events(conn, name):
    return [json.loads(m) for m in conn.texts() if json.loads(m).get("event") == name]


def test_rest_streams_and_the_call_record():
    ws = WsApp().start()
    try:
        with Stack() as stack:
            base = stack.app.url("").rstrip("/")
            stack.app.document("/answer", DOCUMENT.format(app=base))
            call = stack.call(to="1000", hangup_after=40)
            stack.wait(lambda: stack.service.calls)
            uuid = next(iter(stack.service.calls))
            stack.wait(lambda: any(e["kind"] == "verb" and e["detail"]["verb"] == "Wait"
                                   for e in stack.service.store.timeline(uuid)))
            # nothing to stop yet: still 204
            assert _api(stack, "DELETE", f"/Call/{uuid}/Stream/").status_code == 204

            bad = _api(stack, "POST", f"/Call/{uuid}/Stream/", json={"service_url": "http://not-ws/"})
            error_json(bad, 400)
            error_json(_api(stack, "POST", f"/Call/{uuid}/Stream/", json={}), 400)

            resp = _api(stack, "POST", f"/Call/{uuid}/Stream/",
                        json={"service_url": ws.url, "audio_track": "inbound", "bidirectional": "true",
                              "content_type": "audio/x-l16;rate=8000",
                              "status_callback_url": f"{base}/stream-status"})
            assert resp.status_code == 202, resp.text
            assert resp.json()["message"] == "audio streaming started"
            stream_id = resp.json()["stream_id"]
            conn = ws.wait_connection(5)
            start = conn.wait_for(lambda c: _events(c, "start"), 5)[0]
            assert start["start"]["streamId"] == stream_id and start["start"]["callId"] == uuid
            conn.wait_for(lambda c: len(_events(c, "media")) >= 10, 5)

            metrics = parse_metrics(requests.get(f"{stack.http_url}/metrics", timeout=5).text)
            assert metrics["callfork_live_streams"] >= 1 and metrics["callfork_frames_relayed_total"] > 0
            assert metrics["callfork_live_calls"] == 1

            listed = _api(stack, "GET", f"/Call/{uuid}/Stream/").json()
            assert [s["stream_id"] for s in listed["objects"]] == [stream_id]
            one = _api(stack, "GET", f"/Call/{uuid}/Stream/{stream_id}/").json()
            assert one["status"] == "in-progress" and one["service_url"] == ws.url
            assert one["call_uuid"] == uuid and one["audio_track"] == "inbound" and one["bidirectional"] is True
            assert one["end_time"] is None and one["start_time"].endswith("Z")
            assert one["resource_uri"] == f"/api/v1/Account/MA_LOCAL/Call/{uuid}/Stream/{stream_id}/"

            resp = _api(stack, "DELETE", f"/Call/{uuid}/Stream/{stream_id}/")
            assert resp.status_code == 204 and resp.content == b""
            conn.closed.wait(5)
            assert conn.closed.is_set()
            stack.wait(lambda: _api(stack, "GET", f"/Call/{uuid}/Stream/{stream_id}/").json()["status"]
                       == "completed")
            assert error_json(_api(stack, "DELETE", f"/Call/{uuid}/Stream/{stream_id}/"), 404)["error"] \
                == "Stream not found"
            error_json(_api(stack, "GET", f"/Call/{uuid}/Stream/no-such-stream/"), 404)
            stack.app.wait_event("StopStream", timeout=5)
            # the call goes on: the REST stop does not advance the document
            assert uuid in stack.service.calls

            # a second stream, stopped with DELETE all
            second = _api(stack, "POST", f"/Call/{uuid}/Stream/", json={"service_url": ws.url}).json()["stream_id"]
            stack.wait(lambda: len(ws.connections) == 2 and _events(ws.connections[1], "start"), 5)
            assert _api(stack, "DELETE", f"/Call/{uuid}/Stream/").status_code == 204
            stack.wait(lambda: _api(stack, "GET", f"/Call/{uuid}/Stream/{second}/").json()["status"]
                       == "completed")
            assert _api(stack, "DELETE", f"/Call/{uuid}/Stream/").status_code == 204

            assert _api(stack, "DELETE", f"/Call/{uuid}/").status_code == 204
            call.wait(10)
            stack.app.wait_event("Hangup", timeout=10)
            stack.app.wait_event("RecordStop", timeout=10)
            assert stack.service.outbox.flush(10)

            # the call record
            record = _api(stack, "GET", f"/Call/{uuid}/").json()
            assert record["uuid"] == uuid and record["status"] == "completed" and record["live"] is False
            assert record["hangup_source"] == "API Request" and record["hangup_cause_code"] == 4000
            timeline = _api(stack, "GET", f"/Call/{uuid}/Timeline/").json()
            assert timeline["call"]["uuid"] == uuid
            kinds = [e["kind"] for e in timeline["timeline"]]
            verbs = [e["detail"]["verb"] for e in timeline["timeline"] if e["kind"] == "verb"]
            assert verbs == ["Speak", "Record", "Wait"]
            for kind in ("document_fetched", "answered", "stream_started", "stream_ended", "webhook_queued"):
                assert kind in kinds, kind
            assert [s["stream_id"] for s in timeline["streams"]] == [stream_id, second]
            assert all(s["status"] == "completed" for s in timeline["streams"])
            assert len(timeline["recordings"]) == 1 and timeline["recordings"][0]["format"] == "wav"
            hooks = timeline["webhooks"]
            events = [h["event"] for h in hooks]
            assert events.count("StartStream") == 1 and events.count("StopStream") == 1  # the 2nd has no callback URL
            for name in ("Record", "RecordStop", "Hangup"):
                assert name in events, name
            assert all(h["status"] == "delivered" and h["last_status_code"] == 200 and h["attempts"] == 1
                       for h in hooks), hooks
            rec_id = timeline["recordings"][0]["recording_id"]
            wav = requests.get(f"{stack.http_url}/recordings/{rec_id}.wav", headers=stack.api_headers(), timeout=5)
            assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    finally:
        ws.stop()
