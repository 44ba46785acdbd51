"""The Vobiz-style REST API on the whole product (simulator + service + the user's app, real sockets):
auth, JSON errors, make call (originate → socket → answer URL → hangup URL), time_limit, failing
originates, list/get/hang up, transfer during a prompt, /healthz and /metrics."""
import base64
import json
import time

import requests

from api_support import error_json, parse_metrics
from harness import Stack
from switch_sim import Simulator

LONG_SPEAK = "<Response><Speak>" + "This is a very long prompt that nobody will hear to the end. " * 20 + \
    "</Speak><Speak>not reached</Speak></Response>"


def _get(stack, path, **kw):
    return requests.get(stack.api_url(path), headers=stack.api_headers(), timeout=10, **kw)


def _post(stack, path, body, **kw):
    return requests.post(stack.api_url(path), headers=stack.api_headers(), json=body, timeout=10, **kw)


def _delete(stack, path):
    return requests.delete(stack.api_url(path), headers=stack.api_headers(), timeout=10)


def _speaking(events) -> bool:
    """The simulated channel runs an app after the answer (the lazy answer, then <Speak>)."""
    return "CHANNEL_ANSWER" in events and "CHANNEL_EXECUTE" in events[events.index("CHANNEL_ANSWER"):]


def _live_uuid(stack, timeout=10):
    stack.wait(lambda: stack.service.calls, timeout)
    return next(iter(stack.service.calls))


def test_auth_errors_health_and_metrics():
    with Stack() as stack:
        url = stack.api_url("/Call/")
        error_json(requests.get(url, timeout=5), 401)
        resp = requests.get(url, headers={"X-Auth-ID": "MA_LOCAL", "X-Auth-Token": "wrong"}, timeout=5)
        error_json(resp, 401)
        assert resp.headers.get("WWW-Authenticate", "").startswith("Basic")
        error_json(requests.get(url, headers={"X-Auth-ID": "MA_LOCAL"}, timeout=5), 401)
        error_json(requests.get(url, auth=("MA_LOCAL", "wrong"), timeout=5), 401)
        error_json(requests.get(url, headers={"Authorization": "Basic !!!notbase64"}, timeout=5), 401)
        assert requests.get(url, auth=("MA_LOCAL", "test-token"), timeout=5).status_code == 200
        basic = base64.b64encode(b"MA_LOCAL:test-token").decode()
        assert requests.get(url, headers={"Authorization": f"Basic {basic}"}, timeout=5).status_code == 200
        ok = _get(stack, "/Call/")
        assert ok.status_code == 200 and ok.json()["objects"] == []
        # another account: 404 (after auth); unknown call / stream / route: 404 JSON
        other = requests.get(f"{stack.http_url}/api/v1/Account/MA_OTHER/Call/", headers=stack.api_headers(),
                             timeout=5)
        error_json(other, 404)
        unknown = "0b7c4c1e-5a0e-4f7e-9d55-000000000000"
        error_json(_get(stack, f"/Call/{unknown}/"), 404)
        error_json(_get(stack, f"/Call/{unknown}/Timeline/"), 404)
        error_json(_delete(stack, f"/Call/{unknown}/"), 404)
        error_json(_post(stack, f"/Call/{unknown}/", {"aleg_url": stack.app.url("/x")}), 404)
        error_json(_post(stack, f"/Call/{unknown}/Stream/", {"service_url": "ws://127.0.0.1:1/x"}), 404)
        error_json(_get(stack, f"/Call/{unknown}/Stream/"), 404)
        error_json(_delete(stack, f"/Call/{unknown}/Stream/"), 404)
        assert error_json(_get(stack, f"/Call/{unknown}/Stream/{unknown}/"), 404)["error"] == "Stream not found"
        error_json(_delete(stack, f"/Call/{unknown}/Stream/{unknown}/"), 404)
        error_json(requests.get(f"{stack.http_url}/nothing-here", timeout=5), 404)
        error_json(requests.put(url, headers=stack.api_headers(), timeout=5), 405)
        # recordings need auth, and unknown ones are 404
        rec = f"{stack.http_url}/recordings/{unknown}.wav"
        error_json(requests.get(rec, timeout=5), 401)
        error_json(requests.get(rec, headers=stack.api_headers(), timeout=5), 404)
        # make call: bad input is 400 and nothing is dialled
        for body in ({"to": "1000", "answer_url": stack.app.url("/a")},
                     {"from": "1", "to": "1000 &hupall", "answer_url": stack.app.url("/a")},
                     {"from": "1", "to": "1000", "answer_url": "ftp://x/y"},
                     {"from": "1", "to": "1000", "answer_url": stack.app.url("/a"), "caller_name": "x}y"},
                     {"from": "1", "to": "1000", "answer_url": stack.app.url("/a"), "time_limit": "soon"}):
            error_json(_post(stack, "/Call/", body), 400)
        assert stack.sim.channels == {}

        health = requests.get(f"{stack.http_url}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["freeswitch_connected"] is True
        resp = requests.get(f"{stack.http_url}/metrics", timeout=5)
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
        metrics = parse_metrics(resp.text)
        for name in ("callfork_live_calls", "callfork_live_streams", "callfork_frames_relayed_total",
                     "callfork_webhook_queue_depth", "callfork_webhook_failed_total",
                     "callfork_esl_reconnects_total", "callfork_esl_connected"):
            assert name in metrics, name
        assert metrics["callfork_esl_connected"] == 1 and metrics["callfork_live_calls"] == 0

        # FreeSWITCH goes away: health says so with 503
        stack.sim.stop()
        stack.sim = None
        stack.wait(lambda: requests.get(f"{stack.http_url}/healthz", timeout=5).status_code == 503, 10)
        body = requests.get(f"{stack.http_url}/healthz", timeout=5).json()
        assert body["freeswitch_connected"] is False and body["status"] == "degraded"
        assert parse_metrics(requests.get(f"{stack.http_url}/metrics", timeout=5).text)["callfork_esl_connected"] == 0
        # FreeSWITCH is back: callfork reconnects by itself, health is 200 again, the metric counts it
        stack.sim = Simulator(esl=("127.0.0.1", stack.config.freeswitch.esl_port),
                              socket_target=stack.config.server.outbound_address).start()
        stack.wait(lambda: requests.get(f"{stack.http_url}/healthz", timeout=5).status_code == 200, 15)
        metrics = parse_metrics(requests.get(f"{stack.http_url}/metrics", timeout=5).text)
        assert metrics["callfork_esl_connected"] == 1 and metrics["callfork_esl_reconnects_total"] >= 1


def test_make_call_runs_answer_url_and_time_limit_ends_it():
    with Stack() as stack:
        stack.app.document("/outbound", "<Response><Wait length='30'/></Response>")
        started = time.monotonic()
        resp = _post(stack, "/Call/", {"from": "+15551230001", "to": "15557654321",
                                       "answer_url": stack.app.url("/outbound"), "answer_method": "POST",
                                       "hangup_url": stack.app.url("/outbound-hangup"), "time_limit": 2})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        assert body["message"] == "call fired" and body["api_id"]
        request_uuid = body["request_uuid"]

        answer = stack.app.wait_path("/outbound", timeout=10)[0]
        form = answer.form
        assert form["Event"] == "StartApp" and form["Direction"] == "outbound"
        assert form["CallStatus"] == "in-progress"
        assert form["RequestUUID"] == request_uuid == form["ALegRequestUUID"]
        assert form["ALegUUID"] == form["CallUUID"]
        assert form["From"] == "15551230001" and form["To"] == "15557654321"
        assert answer.headers["x-vobiz-signature-v2"]
        uuid = form["CallUUID"]
        live = _get(stack, "/Call/").json()["objects"]
        assert [c["uuid"] for c in live] == [uuid] and live[0]["status"] == "in-progress"

        hangup = stack.app.wait_event("Hangup", timeout=10, path="/outbound-hangup").form
        elapsed = time.monotonic() - started
        assert 1.5 <= elapsed < 8, elapsed
        assert hangup["HangupCauseCode"] == "6000" and hangup["HangupCauseName"] == "Scheduled Hangup"
        assert hangup["CallUUID"] == uuid and hangup["RequestUUID"] == request_uuid
        assert hangup["Direction"] == "outbound" and hangup["CallStatus"] == "completed"
        stack.wait(lambda: not stack.service.calls)
        call = _get(stack, f"/Call/{uuid}/").json()
        assert call["status"] == "completed" and call["hangup_cause_code"] == 6000 and call["live"] is False
        assert call["answer_time"] and call["end_time"] and call["direction"] == "outbound"
        assert call["call_uuid"] == uuid and call["call_status"] == "completed" and 1 <= call["call_duration"] <= 4
        assert _get(stack, "/Call/").json()["objects"] == []
        assert [c["uuid"] for c in _get(stack, "/Call/", params={"status": "all"}).json()["objects"]] == [uuid]


def test_failing_originate_posts_a_failed_hangup():
    # with the dial string "{to}", `to` is a FreeSWITCH endpoint; `error/<CAUSE>` fails at once
    with Stack(env={"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": "{to}"}) as stack:
        for to, status, code in (("error/USER_BUSY", "busy", "3010"),
                                 ("error/NO_ROUTE_DESTINATION", "failed", "5000")):
            resp = _post(stack, "/Call/", {"from": "15551230001", "to": to, "answer_url": stack.app.url("/never"),
                                           "hangup_url": stack.app.url("/failed")})
            assert resp.status_code == 201
            request_uuid = resp.json()["request_uuid"]
            stack.app.wait_for(lambda: any(r.form.get("RequestUUID") == request_uuid
                                           for r in stack.app.events("Hangup")), 10)
            hangup = [r.form for r in stack.app.events("Hangup") if r.form["RequestUUID"] == request_uuid][0]
            assert hangup["CallStatus"] == status and hangup["HangupCauseCode"] == code
            assert hangup["HangupCause"] == to.split("/")[1] and hangup["Direction"] == "outbound"
            assert hangup["To"] == to and hangup["Error"].startswith("originate failed")
            record = _get(stack, f"/Call/{hangup['CallUUID']}/Timeline/").json()
            assert record["call"]["status"] == status
            assert record["webhooks"][0]["event"] == "Hangup"
        assert not stack.app.wait_path("/never", timeout=0.2)


def test_list_get_and_hang_up_a_live_call():
    with Stack() as stack:
        stack.app.document("/answer", "<Response><Speak>hello</Speak><Wait length='30'/></Response>")
        call = stack.call(to="1000", from_="15551230009", hangup_after=30)
        uuid = _live_uuid(stack)
        stack.wait(lambda: any(c["status"] == "in-progress" for c in _get(stack, "/Call/").json()["objects"]))
        listed = _get(stack, "/Call/").json()
        assert listed["meta"]["count"] == 1
        assert listed["objects"][0]["uuid"] == uuid and listed["objects"][0]["from_number"] == "15551230009"
        one = _get(stack, f"/Call/{uuid}/").json()
        assert one["live"] is True and one["to_number"] == "1000"

        resp = _delete(stack, f"/Call/{uuid}/")
        assert resp.status_code == 204 and resp.content == b""
        summary = call.wait(10)
        assert summary["hangup_cause"] == "NORMAL_CLEARING"
        hangup = stack.app.wait_event("Hangup", timeout=10).form
        assert hangup["HangupSource"] == "API Request" and hangup["HangupCauseCode"] == "4000"
        stack.wait(lambda: not stack.service.calls)
        error_json(_delete(stack, f"/Call/{uuid}/"), 404)
        assert _get(stack, "/Call/").json()["objects"] == []


def test_transfer_interrupts_the_prompt_and_runs_the_new_document():
    with Stack() as stack:
        stack.app.document("/answer", LONG_SPEAK)
        stack.app.document("/transfer", "<Response><Speak>transferred</Speak><Hangup/></Response>")
        call = stack.call(to="1000", hangup_after=60)
        uuid = _live_uuid(stack)
        # the prompt is playing (a transfer that lands before the playback starts is honoured only
        # after the verb ends: see the report)
        stack.wait(lambda: _speaking(call.channel.events_fired), 5)
        started = time.monotonic()
        resp = _post(stack, f"/Call/{uuid}/", {"aleg_url": stack.app.url("/transfer"), "aleg_method": "POST"})
        assert resp.status_code == 202, resp.text
        assert resp.json()["message"] == "call transferred" and resp.json()["call_uuid"] == uuid
        transfer = stack.app.wait_path("/transfer", timeout=5)[0].form
        assert transfer["Event"] == "Transfer" and transfer["CallUUID"] == uuid
        summary = call.wait(15)
        assert time.monotonic() - started < 10  # the long prompt did not play to its end
        hangup = stack.app.wait_event("Hangup", timeout=10).form
        assert hangup["HangupSource"] == "Answer XML" and hangup["HangupCauseCode"] == "4000"
        assert summary["answered"] is True
        verbs = [e["detail"]["verb"] for e in _get(stack, f"/Call/{uuid}/Timeline/").json()["timeline"]
                 if e["kind"] == "verb"]
        assert verbs == ["Speak", "Speak", "Hangup"]  # the first prompt, then the new document
        bad = _post(stack, f"/Call/{uuid}/", {"aleg_url": stack.app.url("/transfer")})
        error_json(bad, 404)
        assert json.loads(bad.text)["error"]


def test_transfer_during_a_wait_and_a_looping_play():
    with Stack() as stack:
        stack.app.document("/answer", "<Response><Wait length='30'/></Response>")
        stack.app.document("/loop", "<Response><Speak loop='0'>again and again</Speak></Response>")
        stack.app.document("/transfer", "<Response><Hangup/></Response>")
        call = stack.call(to="1000", hangup_after=60)
        uuid = _live_uuid(stack)
        stack.wait(lambda: any(e["kind"] == "verb" and e["detail"]["verb"] == "Wait"
                               for e in stack.service.store.timeline(uuid)))
        executed = call.channel.events_fired.count("CHANNEL_EXECUTE")
        assert _post(stack, f"/Call/{uuid}/", {"aleg_url": stack.app.url("/loop")}).status_code == 202
        stack.app.wait_path("/loop", timeout=5)
        # the endless <Speak> is playing (an app ran since the Wait was cut short)
        stack.wait(lambda: call.channel.events_fired.count("CHANNEL_EXECUTE") > executed, 5)
        assert _post(stack, f"/Call/{uuid}/", {"aleg_url": stack.app.url("/transfer")}).status_code == 202
        summary = call.wait(10)
        assert summary["answered"] is True
        assert stack.app.wait_event("Hangup", timeout=10).form["HangupSource"] == "Answer XML"
        assert [r.form["Event"] for r in stack.app.requests if r.path in ("/loop", "/transfer")] == \
            ["Transfer", "Transfer"]


def test_the_vobiz_sdk_drives_the_api():
    """vobiz-python's own client (pointed at callfork instead of api.vobiz.ai): create, list_live,
    get, transfer, hangup; and its error mapping of callfork's JSON errors."""
    import vobiz
    from vobiz.exceptions import AuthenticationError, ResourceNotFoundError

    with Stack() as stack:
        stack.app.document("/sdk", "<Response><Wait length='30'/></Response>")
        stack.app.document("/sdk-transfer", "<Response><Wait length='30'/></Response>")
        client = vobiz.RestClient("MA_LOCAL", "test-token")
        client.base_uri = f"{stack.http_url}/api/v1/Account"
        made = client.calls.create("15551230001", "15557654321", stack.app.url("/sdk"),
                                   hangup_url=stack.app.url("/sdk-hangup"))
        assert made.message == "call fired" and made.request_uuid
        uuid = stack.app.wait_path("/sdk", timeout=10)[0].form["CallUUID"]
        live = client.calls.list_live()
        assert [c.uuid for c in live.objects] == [uuid]
        assert client.calls.get(uuid).status == "in-progress"
        moved = client.calls.transfer(uuid, legs="aleg", aleg_url=stack.app.url("/sdk-transfer"))
        assert moved.message == "call transferred"
        assert stack.app.wait_path("/sdk-transfer", timeout=5)[0].form["Event"] == "Transfer"
        client.calls.hangup(uuid)
        hangup = stack.app.wait_event("Hangup", timeout=10, path="/sdk-hangup").form
        assert hangup["HangupSource"] == "API Request" and hangup["RequestUUID"] == made.request_uuid
        stack.wait(lambda: not stack.service.calls)
        try:
            client.calls.hangup(uuid)
            raise AssertionError("hangup of an ended call must fail")
        except ResourceNotFoundError as exc:
            assert "already ended" in str(exc)
        bad = vobiz.RestClient("MA_LOCAL", "wrong")
        bad.base_uri = client.base_uri
        try:
            bad.calls.list_live()
            raise AssertionError("wrong token must fail")
        except AuthenticationError as exc:
            assert "invalid credentials" in str(exc)


def test_make_call_with_a_fallback_url():
    with Stack() as stack:
        stack.app.document("/broken", "oops", content_type="text/plain", status=500)
        stack.app.document("/fallback", "<Response><Speak>from the fallback</Speak></Response>")
        resp = _post(stack, "/Call/", {"from": "15551230001", "to": "1000", "answer_url": stack.app.url("/broken"),
                                       "fallback_url": stack.app.url("/fallback"), "fallback_method": "POST",
                                       "hangup_url": stack.app.url("/fb-hangup")})
        assert resp.status_code == 201
        fallback = stack.app.wait_path("/fallback", timeout=10)[0].form
        assert fallback["Direction"] == "outbound" and fallback["RequestUUID"] == resp.json()["request_uuid"]
        hangup = stack.app.wait_event("Hangup", timeout=10, path="/fb-hangup").form
        assert hangup["HangupCauseCode"] == "4010"
        error_json(_post(stack, "/Call/", {"from": "1", "to": "1000", "answer_url": stack.app.url("/a"),
                                            "fallback_method": "PUT"}), 400)


def test_transfer_right_as_a_prompt_starts_still_interrupts_it():
    with Stack() as stack:
        stack.app.document("/answer", LONG_SPEAK)
        stack.app.document("/transfer", "<Response><Hangup/></Response>")
        call = stack.call(to="1000", hangup_after=60)
        uuid = _live_uuid(stack)
        # as soon as the verb begins (before FreeSWITCH runs `speak`)
        stack.wait(lambda: any(e["kind"] == "verb" for e in stack.service.store.timeline(uuid)))
        started = time.monotonic()
        assert _post(stack, f"/Call/{uuid}/", {"aleg_url": stack.app.url("/transfer")}).status_code == 202
        stack.app.wait_path("/transfer", timeout=5)
        call.wait(10)
        assert time.monotonic() - started < 5
