"""Plivo's "hang up a call request", `DELETE .../Request/<request_uuid>/` (callfork/http_api.py,
callfork/originate.py): the call a `POST Call/` placed, named by the request_uuid that POST answered,
is cancelled while its far side rings (the Hangup webhook says ORIGINATOR_CANCEL, the answer URL is
never fetched, the channel is gone) and hung up once it runs; a request that is over, unknown, of
another account or unauthenticated is refused. On the simulator and (marked `freeswitch`) on a real
FreeSWITCH, whose far side is mod_loopback's inline form (it rings, then does what `to` says).
Real-switch runs bind port 8084: run them under `flock /tmp/callfork-fs.lock`."""
import requests

from harness import Stack, switch_modes
from waiting import wait_until

DIAL = "loopback/m:^:ring_ready^{to}^park/default/inline"


def _place(stack, to: str) -> str:
    resp = requests.post(stack.api_url("/Call/"), headers=stack.api_headers(), timeout=10,
                         json={"from": "15551230001", "to": to, "answer_url": stack.app.url("/answer"),
                               "hangup_url": stack.app.url("/hangup"), "ring_timeout": 60})
    assert resp.status_code == 201, resp.text
    return resp.json()["request_uuid"]


def _delete(stack, request_uuid: str, headers=None, account=None):
    url = stack.api_url(f"/Request/{request_uuid}/")
    if account is not None:
        url = url.replace(f"/Account/{stack.config.server.auth_id}/", f"/Account/{account}/")
    return requests.delete(url, headers=stack.api_headers() if headers is None else headers, timeout=10)


def _hangup(stack, request_uuid: str) -> dict:
    def mine():
        return [r.form for r in stack.app.events("Hangup") if r.form.get("RequestUUID") == request_uuid]
    assert stack.app.wait_for(mine, 15), "no Hangup webhook"
    return mine()[0]


@switch_modes()
def test_a_ringing_call_request_is_cancelled(real_fs):
    with Stack(real=real_fs, env={"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": DIAL}) as stack:
        request_uuid = _place(stack, "sleep:30000")
        uuid = wait_until(lambda: stack.service.originations.call_of_request(request_uuid), 10)
        stack.wait(lambda: stack.service.control.api(f"uuid_exists {uuid}").strip() == "true", 10)
        resp = _delete(stack, request_uuid)
        assert resp.status_code == 204, resp.text
        hangup = _hangup(stack, request_uuid)
        assert hangup["CallUUID"] == uuid and hangup["HangupCause"] == "ORIGINATOR_CANCEL", hangup
        stack.wait(lambda: stack.service.control.api(f"uuid_exists {uuid}").strip() == "false", 10)
        assert not [r for r in stack.app.requests if r.path == "/answer"]
        again = _delete(stack, request_uuid)
        assert again.status_code == 404 and "call request not found" in again.json()["error"], again.text


@switch_modes()
def test_a_running_call_is_hung_up_by_its_request_uuid(real_fs):
    with Stack(real=real_fs, env={"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": DIAL}) as stack:
        stack.app.document("/answer", "<Response><Wait length='60'/></Response>")
        request_uuid = _place(stack, "answer")
        stack.app.wait_path("/answer", timeout=15)
        uuid = wait_until(lambda: next((u for u, ctx in stack.service.calls.items()
                                        if ctx.session.answered), None), 10)
        assert stack.service.originations.call_of_request(request_uuid) == uuid
        assert _delete(stack, request_uuid).status_code == 204
        hangup = _hangup(stack, request_uuid)
        assert hangup["CallUUID"] == uuid and hangup["HangupCause"] == "NORMAL_CLEARING"
        assert hangup["HangupSource"] == "API Request", hangup
        stack.wait(lambda: stack.service.originations.call_of_request(request_uuid) is None, 10)
        assert _delete(stack, request_uuid).status_code == 404


def test_unknown_foreign_and_unauthenticated_requests_are_refused():
    with Stack(env={"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": DIAL}) as stack:
        request_uuid = _place(stack, "sleep:30000")
        stack.wait(lambda: stack.service.originations.call_of_request(request_uuid), 10)
        assert _delete(stack, "00000000-0000-0000-0000-000000000000").status_code == 404
        assert _delete(stack, request_uuid, account="MA_SOMEONE_ELSE").status_code == 404
        assert _delete(stack, request_uuid, headers={}).status_code == 401
        wrong = dict(stack.api_headers(), **{"X-Auth-Token": "wrong"})
        assert _delete(stack, request_uuid, headers=wrong).status_code == 401
        # none of them touched the call: it still rings
        assert stack.service.originations.call_of_request(request_uuid) is not None
        assert not stack.app.events("Hangup")
        assert _delete(stack, request_uuid).status_code == 204
        assert _hangup(stack, request_uuid)["HangupCause"] == "ORIGINATOR_CANCEL"
