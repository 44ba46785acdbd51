"""A REST call cancelled the moment it was placed, while its far side answers at once (callfork/
originate.py `cancel`, `arrived`): the cancel can land before the originate created the channel
(uuid_kill answers "-ERR No such channel!"), or after the call reached callfork but before the service
counted it among its live calls. Each cancel must end its call: the Vobiz DELETE Request/ and the
Twilio Status=canceled answer success, and the call ends by the API (its originate cancelled, or the
API's hang-up once it ran), never by its document, which would keep it for 30 s. On FreeSWITCH 1.10.12
3 of 10 such cancels were lost before (404, the call ran); on the simulator, marked `freeswitch` for a
real one (run under `flock /tmp/callfork-fs.lock`)."""
import requests

from harness import Stack, switch_modes
from twilio_support import client, twilio_stack
from verbs.twiml import call_uuid
from waiting import wait_until

DIAL = "loopback/m:^:{to}^park/default/inline"   # `to`=answer: the far side answers at once
DOCUMENT = "<Response><Wait length='30'/></Response>"
ROUNDS = 8


def _by_api(form: dict) -> bool:
    """The Hangup webhook of a call the API ended: its originate cancelled, or hung up once it ran."""
    return (form["HangupCause"] == "ORIGINATOR_CANCEL"
            or (form["HangupSource"] == "API Request" and form["HangupCause"] == "NORMAL_CLEARING"))


@switch_modes()
def test_a_vobiz_call_request_cancelled_at_once_ends(real_fs):
    with Stack(real=real_fs, env={"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": DIAL}) as stack:
        stack.app.document("/answer", DOCUMENT)
        for _ in range(ROUNDS):
            resp = requests.post(stack.api_url("/Call/"), headers=stack.api_headers(), timeout=10,
                                 json={"from": "15551230001", "to": "answer", "answer_url": stack.app.url("/answer"),
                                       "hangup_url": stack.app.url("/hangup")})
            request_uuid = resp.json()["request_uuid"]
            cancel = requests.delete(stack.api_url(f"/Request/{request_uuid}/"), headers=stack.api_headers(),
                                     timeout=10)
            assert cancel.status_code == 204, cancel.text
            form = wait_until(lambda: next((r.form for r in stack.app.requests if r.path == "/hangup"
                                            and r.form.get("RequestUUID") == request_uuid), None), 40, "its Hangup")
            assert _by_api(form), form
        stack.wait(lambda: not stack.service.calls and not stack.service.originations.pending_calls(), 10)


@switch_modes()
def test_a_twilio_call_cancelled_at_once_ends(real_fs):
    with twilio_stack(real=real_fs, env={"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": DIAL}) as stack:
        stack.app.document("/answer", DOCUMENT)
        twilio = client(stack)
        for _ in range(ROUNDS):
            call = twilio.calls.create(to="answer", from_="+15551230001", url=stack.app.url("/answer"),
                                       status_callback=stack.app.url("/status"), status_callback_event=["completed"])
            assert twilio.calls(call.sid).update(status="canceled").status in ("canceled", "completed")
            form = wait_until(lambda: next((r.form for r in stack.app.requests if r.path == "/status"
                                            and r.form.get("CallSid") == call.sid), None), 40, "its completed")
            assert form["CallStatus"] in ("canceled", "completed"), form
            record = stack.service.store.get_call(call_uuid(call.sid))
            assert record["hangup_source"] in ("Caller", "API Request"), record
        stack.wait(lambda: not stack.service.calls and not stack.service.originations.pending_calls(), 10)
