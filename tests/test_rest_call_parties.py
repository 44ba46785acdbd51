"""The webhooks of a call placed through the REST API name the parties its request named: the answer
request (Event=StartApp) and the Hangup webhook carry From = the `from` number, To = the `to`
number (both without a leading '+', as Vobiz and Plivo send numbers), CallerName = `caller_name`,
Direction=outbound, and the call record says the same. The channel does not: FreeSWITCH flips
caller and callee id on a channel it originates (tests/fixtures/fs-captures/originate-callerid.json,
replayed by tests/test_sim_originate_cid_truth.py), so its caller id is "Outbound Call" <default>
for `loopback/<to>/default`; the tests check that the channel was flipped, so they cannot pass on
a simulator that is kinder than FreeSWITCH. On the simulator, and (marked `freeswitch`) on a real
FreeSWITCH 1.10.12 through the app's HTTP receiver."""
import pytest
import requests

from harness import Stack


def _rest_call(stack, body: dict):
    stack.app.document("/outbound", "<Response><Wait length='1'/></Response>")
    body = dict(body, answer_url=stack.app.url("/outbound"), hangup_url=stack.app.url("/outbound-hangup"))
    resp = requests.post(stack.api_url("/Call/"), headers=stack.api_headers(), json=body, timeout=10)
    assert resp.status_code == 201, resp.text
    start = stack.app.wait_path("/outbound", timeout=20)[0].form
    uuid = start["CallUUID"]
    flipped = stack.service.control.api(f"uuid_getvar {uuid} channel_cid_flipped").strip()
    hangup = stack.app.wait_event("Hangup", timeout=20, path="/outbound-hangup").form
    stack.wait(lambda: not stack.service.calls, 10)
    record = requests.get(stack.api_url(f"/Call/{uuid}/Timeline/"), headers=stack.api_headers(), timeout=10).json()
    return resp.json()["request_uuid"], start, hangup, flipped, record["call"]


def _check(request_uuid, start, hangup, flipped, call, *, from_, to, caller_name):
    assert flipped == "yes"      # the channel's caller id is not the one asked for
    assert start["Event"] == "StartApp" and hangup["Event"] == "Hangup"
    for form in (start, hangup):
        assert (form["From"], form["To"], form["CallerName"], form["Direction"]) == (from_, to, caller_name, "outbound")
        assert form["RequestUUID"] == request_uuid and form["CallUUID"] == start["CallUUID"]
    assert (call["from_number"], call["to_number"], call["direction"]) == (from_, to, "outbound")


def test_rest_call_webhooks_name_the_requested_parties_on_the_simulator():
    with Stack() as stack:
        got = _rest_call(stack, {"from": "+14155550100", "to": "15557654321", "caller_name": "Alice"})
    _check(*got, from_="14155550100", to="15557654321", caller_name="Alice")


def test_without_a_caller_name_the_caller_name_is_the_from_number():
    with Stack() as stack:
        got = _rest_call(stack, {"from": "+14155550100", "to": "+15557654321"})
    _check(*got, from_="14155550100", to="15557654321", caller_name="+14155550100")


@pytest.mark.freeswitch
def test_rest_call_webhooks_name_the_requested_parties_on_freeswitch():
    """The dial string dials 9999 whatever `to` is (the far leg answers and parks; `{to}`, which
    the configuration requires, only goes into a channel variable), so the channel's destination
    (9999) and its flipped caller id ("Outbound Call" <default>) both differ from what the request
    named."""
    env = {"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": "{cf_test_to={to}}loopback/9999/default"}
    with Stack(real=True, env=env) as stack:
        got = _rest_call(stack, {"from": "+14155550100", "to": "+15557654321", "caller_name": "Alice"})
    _check(*got, from_="14155550100", to="15557654321", caller_name="Alice")
