"""What a second review of the service found, each pinned by a scenario: transfers never leave a
call stuck behind queued apps or a blocking stream; URLs with commas survive originate; recordings
and media live at absolute paths (FreeSWITCH resolves relative ones against its own directories);
`allow_private_urls = false` covers every URL an app or API caller gives."""
import json
from pathlib import Path

import requests

from harness import Stack
from wsapp import AppServer as WsApp


def _live_uuid(stack, timeout=10):
    stack.wait(lambda: stack.service.calls, timeout)
    return next(iter(stack.service.calls))


def _transfer(stack, uuid, path):
    return requests.post(stack.api_url(f"/Call/{uuid}/"), headers=stack.api_headers(),
                         json={"aleg_url": stack.app.url(path)}, timeout=5)


def test_transfer_during_async_dtmf_with_a_queued_prompt_runs_the_new_document():
    # <DTMF> is async: the <Speak> is queued behind it; a transfer must not drop it for good
    with Stack() as stack:
        stack.app.document("/answer", "<Response><DTMF>1234567890123456789</DTMF>"
                                      "<Speak>a prompt queued behind the digits</Speak></Response>")
        stack.app.document("/transfer", "<Response><Hangup/></Response>")
        call = stack.call(to="1000", hangup_after=40)
        uuid = _live_uuid(stack)
        stack.wait(lambda: any(e["kind"] == "verb" and e["detail"]["verb"] == "Speak"
                               for e in stack.service.store.timeline(uuid)))
        assert _transfer(stack, uuid, "/transfer").status_code == 202
        stack.app.wait_path("/transfer", timeout=10)
        summary = call.wait(15)
        hangup = stack.app.wait_event("Hangup", timeout=10).form
    assert summary["duration_s"] < 30                       # not held until the caller gave up
    assert hangup["HangupSource"] == "Answer XML"


def test_transfer_ends_a_keep_call_alive_stream_quietly():
    app_ws = WsApp().start()
    try:
        with Stack() as stack:
            stack.app.document("/answer", f'<Response><Stream bidirectional="true" keepCallAlive="true" '
                                          f'statusCallbackUrl="{stack.app.url("/status")}">{app_ws.url}</Stream>'
                                          f'</Response>')
            stack.app.document("/transfer", "<Response><Hangup/></Response>")
            call = stack.call(to="1000", hangup_after=40)
            uuid = _live_uuid(stack)
            app_ws.wait_connection(timeout=10).wait_for(lambda c: len(c.texts()) >= 5, 10)
            assert _transfer(stack, uuid, "/transfer").status_code == 202
            stack.app.wait_path("/transfer", timeout=10)
            call.wait(15)
            stack.app.wait_event("Hangup", timeout=10)
            events = [r.form.get("Event") for r in stack.app.requests if r.path == "/status"]
    finally:
        app_ws.stop()
    assert "StartStream" in events and "StopStream" not in events   # Vobiz: no StopStream on transfer


def test_originate_keeps_urls_with_commas_and_recordings_are_absolute(tmp_path):
    with Stack(env={"CALLFORK_SERVER_DATA_DIR": "relative-data"}) as stack:
        try:
            doc = ('<Response><Record recordSession="true" fileFormat="wav" playBeep="false"/>'
                   '<Wait length="1"/></Response>')
            stack.app.document("/answer", doc)
            body = {"from": "15551230001", "to": "15557654321", "caller_name": "Smith, John",
                    "answer_url": stack.app.url("/answer") + "?ids=1,2&x=a,b"}
            resp = requests.post(stack.api_url("/Call/"), headers=stack.api_headers(), json=body, timeout=5)
            assert resp.status_code == 201, resp.text
            answer = stack.app.wait_path("/answer", timeout=10)[0]
            assert answer.args == {"ids": "1,2", "x": "a,b"}
            stack.app.wait_event("Hangup", timeout=15)
            uuid = answer.form["CallUUID"]
            stack.wait(lambda: stack.service.store.list_recordings(uuid))
            path = Path(stack.service.store.list_recordings(uuid)[0]["path"])
            assert path.is_absolute() and path.exists()
        finally:
            stack.stop()
            for leftover in Path.cwd().glob("relative-data"):
                import shutil
                shutil.rmtree(leftover, ignore_errors=True)


def test_private_targets_are_refused_everywhere_when_not_allowed():
    with Stack(env={"CALLFORK_SERVER_ALLOW_PRIVATE_URLS": "false"}) as stack:
        # REST: an answer URL on loopback is refused before anything is dialled
        body = {"from": "15551230001", "to": "15557654321", "answer_url": stack.app.url("/answer")}
        resp = requests.post(stack.api_url("/Call/"), headers=stack.api_headers(), json=body, timeout=5)
        assert resp.status_code == 400
        assert "private or loopback" in json.loads(resp.text)["error"]
        # an inbound call to a number whose answer URL is on loopback ends with 7011, and says why
        call = stack.call(to="1000")
        call.wait(15)
        stack.wait(lambda: (stack.service.store.list_calls(live_only=False, limit=5) or [{}])[0].get("error"))
        record = stack.service.store.list_calls(live_only=False, limit=5)[0]
    assert record["hangup_cause_code"] == 7011
    assert stack.app.requests == []                         # nothing was sent to the private address


def test_failed_webhooks_can_be_sent_again_with_the_same_keys(tmp_path):
    """A receiver down for longer than the retry schedule (here Vobiz's count, with no retry): the
    webhooks end `failed` (kept), and `POST .../Webhooks/Retry/` (or `callfork retry-webhooks`) sends
    them again, same key, in order."""
    with Stack(env={"CALLFORK_WEBHOOKS_RETRY_MODE": "vobiz", "CALLFORK_WEBHOOKS_RETRIES": "0"}) as stack:
        stack.app.document("/answer", "<Response><Hangup/></Response>")
        stack.app.document("/hangup", "down", content_type="text/plain", status=503)
        call = stack.call(to="1000")
        call.wait(15)
        first = stack.app.wait_path("/hangup", timeout=10)[0]
        outbox = stack.service.outbox
        stack.wait(lambda: outbox.failed_count() == 1)
        stack.app.document("/hangup", "ok", content_type="text/plain")     # the receiver is back
        resp = requests.post(stack.api_url("/Webhooks/Retry/"), headers=stack.api_headers(),
                             json={"call_uuid": call.uuid}, timeout=5)
        assert resp.status_code == 200 and resp.json()["count"] == 1
        again = stack.app.wait_path("/hangup", timeout=10, count=2)[1]
        stack.wait(lambda: outbox.failed_count() == 0 and outbox.depth() == 0)
    assert again.headers["x-callfork-idempotency-key"] == first.headers["x-callfork-idempotency-key"]
    assert again.form == first.form and again.form["Event"] == "Hangup"
