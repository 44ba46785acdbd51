"""Webhooks that never get lost, at the service level (README, What works): a receiver outage, a `kill -9` of
`callfork serve` with webhooks in the outbox, a slow receiver next to other calls, 5xx retried and
4xx not, and signatures checked with the vobiz SDK's own validators.

Every webhook carries `X-Callfork-Idempotency-Key`; delivery is at least once, so "exactly once" here
means: every key arrives, and each key is answered 200 once (a receiver dedupes on the key).

Signatures, checked against vobiz-python 0.1.1 on real webhooks:
- V2 (`base64(HMAC-SHA256(token, URL-without-query + nonce))`): the SDK's `validate_signature` accepts
  callfork's header; the docs and the SDK agree.
- V3: the SDK's `validate_v3_signature` implements Plivo's V3 (the URL, `?`, the sorted POST params
  as key+value, `.`, nonce), not the documented `URL + "." + nonce`. With the default
  `[webhooks] v3_mode = "docs"` the SDK rejects callfork's V3 (as it would reject the documented
  form from anyone); with `v3_mode = "sdk"` it accepts it. The two forms never agree when a webhook
  has parameters, and every callfork webhook has some."""
import time

import requests
from vobiz.utils import validate_signature
from vobiz.utils.signature_v3 import validate_v3_signature

from harness import AppServer, Stack
from http_receiver import HttpReceiver, Reply
from switch_sim import CallScript, Simulator
from serve_support import (ServeProcess, check_delivered_once_in_order, idempotency_key, number_table,
                           serve_ports, write_serve_config)
from waiting import wait_until


RECORDING_DOC = """<Response>
  <Record recordSession="true" fileFormat="wav" redirect="false" maxLength="60"
          action="{hooks}/rec-action" callbackUrl="{hooks}/rec-stop"/>
  <Wait length="1"/>
</Response>"""

FAST_RETRIES = {"CALLFORK_WEBHOOKS_RETRY_WINDOW_S": "600", "CALLFORK_WEBHOOKS_BACKOFF_BASE_S": "0.05",
                "CALLFORK_WEBHOOKS_BACKOFF_MAX_S": "0.2"}


def _make_call(stack, answer_url, hangup_url, to="1000"):
    resp = requests.post(stack.api_url("/Call/"), headers=stack.api_headers(), timeout=10,
                         json={"from": "15551230001", "to": to, "answer_url": answer_url, "hangup_url": hangup_url})
    assert resp.status_code == 201, resp.text
    return resp.json()["request_uuid"]


def _timeline(stack, uuid):
    return requests.get(stack.api_url(f"/Call/{uuid}/Timeline/"), headers=stack.api_headers(), timeout=10).json()


def test_receiver_outage_then_back_delivers_everything_once_in_order():
    hooks = HttpReceiver().start()
    hooks.stop()  # the user's webhook receiver is down (connection refused); documents still served
    with Stack(env=FAST_RETRIES) as stack:
        doc = stack.app.document("/rec", RECORDING_DOC.format(hooks=hooks.url("").rstrip("/")))
        for _ in range(2):
            _make_call(stack, doc, hooks.url("/hangup"))
        stack.wait(lambda: len(stack.app.wait_path("/rec", timeout=0)) == 2, 10)
        uuids = [r.form["CallUUID"] for r in stack.app.wait_path("/rec", timeout=0)]
        stack.wait(lambda: not stack.service.calls, 15)
        # Record, Hangup, RecordStop per call: all stored; the head of each call's line keeps failing
        # and the others wait behind it (per-call order)
        outbox = stack.service.outbox
        stack.wait(lambda: all(len(outbox.deliveries(u)) == 3 and outbox.deliveries(u)[0]["attempts"] >= 2
                               for u in uuids), 10)
        assert outbox.depth() == 6
        for uuid in uuids:
            head, *rest = outbox.deliveries(uuid)
            assert head["last_error"] == "connection refused"
            assert all(d["attempts"] == 0 and d["status"] == "pending" for d in rest)

        hooks.start()  # back on the same port
        try:
            assert hooks.wait_for(lambda: len(hooks.answered(200)) == 6, 15)
            assert outbox.flush(5)
            deliveries = [d for u in uuids for d in outbox.deliveries(u)]
            check_delivered_once_in_order(hooks.answered(200), deliveries)
            for uuid in uuids:
                record = _timeline(stack, uuid)["webhooks"]
                assert [w["event"] for w in record][-1] in ("Hangup", "RecordStop")
                assert all(w["status"] == "delivered" and w["last_status_code"] == 200 for w in record)
                assert record[0]["attempts"] >= 3 and record[1]["attempts"] >= 1
            # the signatures on a real webhook verify with the vobiz SDK (V2); V3 is the documented form
            hangup = [r for r in hooks.requests if r.path == "/hangup"][0]
            url = hooks.url("/hangup")
            h = hangup.headers
            assert validate_signature(url, h["x-vobiz-signature-v2-nonce"], h["x-vobiz-signature-v2"], "test-token")
            assert not validate_signature(url, h["x-vobiz-signature-v2-nonce"], h["x-vobiz-signature-v2"], "other")
            assert h["x-vobiz-signature-ma-v2"] == h["x-vobiz-signature-v2"]
            assert h["x-vobiz-signature-v2-nonce"] != h["x-vobiz-signature-v3-nonce"]
            # docs form (URL + "." + nonce): the SDK's V3 validator (Plivo form, with the params) rejects it
            assert not validate_v3_signature("POST", url, h["x-vobiz-signature-v3-nonce"], "test-token",
                                             h["x-vobiz-signature-v3"], hangup.form)
            assert h["user-agent"].startswith("callfork/") and h["x-callfork-event"] == "Hangup"
        finally:
            hooks.stop()


def test_5xx_is_retried_4xx_is_not_and_sdk_v3_signatures_verify():
    attempts = {}

    def respond(req):
        attempts[req.path] = attempts.get(req.path, 0) + 1
        if req.path == "/flaky" and attempts[req.path] <= 2:
            return Reply(503)
        if req.path == "/gone":
            return Reply(404)
        return Reply(200)

    hooks = HttpReceiver(responder=respond).start()
    env = dict(FAST_RETRIES, CALLFORK_WEBHOOKS_RETRY_MODE="vobiz", CALLFORK_WEBHOOKS_RETRIES="3",
               CALLFORK_WEBHOOKS_V3_MODE="sdk")
    try:
        with Stack(env=env) as stack:
            doc = stack.app.document("/rec", f"""<Response>
              <Record recordSession="true" fileFormat="wav" redirect="false" action="{hooks.url('/gone')}"/>
              <Wait length="1"/></Response>""")
            _make_call(stack, doc, hooks.url("/flaky"))
            assert hooks.wait_for(lambda: len(hooks.answered(200)) == 1, 15)
            stack.wait(lambda: stack.service.outbox.depth() == 0, 5)
            uuid = stack.app.wait_path("/rec")[0].form["CallUUID"]
            record = {w["event"]: w for w in _timeline(stack, uuid)["webhooks"]}
            assert record["Record"]["status"] == "failed" and record["Record"]["attempts"] == 1
            assert record["Record"]["last_status_code"] == 404
            assert record["Hangup"]["status"] == "delivered" and record["Hangup"]["attempts"] == 3
            assert attempts == {"/gone": 1, "/flaky": 3}
            flaky = [r for r in hooks.requests if r.path == "/flaky"]
            assert len({idempotency_key(r) for r in flaky}) == 1  # the retries carry the same key
            metrics = requests.get(f"{stack.http_url}/metrics", timeout=5).text
            assert "callfork_webhook_failed_total 1" in metrics.splitlines()
            # v3_mode = "sdk": the vobiz SDK's V3 validator accepts callfork's V3 (and V2 still verifies)
            last = flaky[-1]
            h = last.headers
            assert validate_v3_signature("POST", hooks.url("/flaky"), h["x-vobiz-signature-v3-nonce"], "test-token",
                                         h["x-vobiz-signature-v3"], last.form)
            assert validate_signature(hooks.url("/flaky"), h["x-vobiz-signature-v2-nonce"],
                                      h["x-vobiz-signature-v2"], "test-token")
    finally:
        hooks.stop()


def test_a_slow_receiver_blocks_neither_calls_nor_other_calls_webhooks():
    hooks = HttpReceiver(responder=lambda req: Reply(hold=True, hold_status=200) if req.path == "/slow"
                         else Reply(200), hold_timeout=10).start()
    env = {"CALLFORK_WEBHOOKS_READ_TIMEOUT_S": "15"}
    try:
        with Stack(env=env) as stack:
            stack.app.document("/short", "<Response><Speak>hi</Speak></Response>")
            _make_call(stack, stack.app.url("/short"), hooks.url("/slow"))
            # the first call's Hangup reached the receiver, which sits on it (10 s)
            assert hooks.wait_for(lambda: [r for r in hooks.requests if r.path == "/slow"], 10)
            started = time.monotonic()
            _make_call(stack, stack.app.url("/short"), hooks.url("/fast"))
            assert hooks.wait_for(lambda: hooks.answered(200), 8)
            fast = hooks.answered(200)[0]
            assert fast.path == "/fast" and fast.form["Event"] == "Hangup"
            slow = [r for r in hooks.requests if r.path == "/slow"][0]
            assert slow.answered_status is None  # still held while the second call came and went
            assert time.monotonic() - started < 8
            hooks.release()
            assert hooks.wait_for(lambda: slow.answered_status == 200, 5)
            assert stack.service.outbox.flush(5)
    finally:
        hooks.release()
        hooks.stop()


# -- kill -9 of a real `callfork serve` ---------------------------------------------------------------
RETRY = {"retry_window_s": 600, "backoff_base_s": 0.05, "backoff_max_s": 0.2}


def test_kill_9_with_webhooks_in_the_outbox_then_restart_delivers_them(tmp_path):
    ports = serve_ports()
    hooks = HttpReceiver().start()
    hooks.stop()  # down while callfork runs the call
    app = AppServer().start()
    doc = app.document("/answer", RECORDING_DOC.format(hooks=hooks.url("").rstrip("/")))
    long_doc = app.document("/long", "<Response><Wait length='60'/></Response>")
    config = write_serve_config(tmp_path / "callfork.toml", ports,
                                number_table(doc, hooks.url("/hangup")) + number_table(long_doc, number="2000"),
                                webhooks=RETRY)
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    headers = {"X-Auth-ID": "MA_LOCAL", "X-Auth-Token": "test-token"}
    serve = ServeProcess(config, ports["http"])
    second = None
    try:
        serve.start()
        call = sim.place_call(CallScript(to="1000", hangup_after=30))
        call.wait(15)

        def pending():
            resp = requests.get(f"{serve.http_url}/api/v1/Account/MA_LOCAL/Call/{call.uuid}/Timeline/",
                                headers=headers, timeout=5)
            hooks_ = resp.json()["webhooks"] if resp.status_code == 200 else []
            return (len(hooks_) == 3 and all(w["status"] in ("pending", "in_flight") for w in hooks_)
                    and hooks_[0]["attempts"] >= 2)

        wait_until(pending, 10, "webhooks pending and retried", interval=0.05)
        keys = [w["idempotency_key"] for w in requests.get(
            f"{serve.http_url}/api/v1/Account/MA_LOCAL/Call/{call.uuid}/Timeline/", headers=headers,
            timeout=5).json()["webhooks"]]
        # a second call is live when callfork dies
        live = sim.place_call(CallScript(to="2000", hangup_after=60))
        wait_until(lambda: requests.get(f"{serve.http_url}/api/v1/Account/MA_LOCAL/Call/", headers=headers,
                                        timeout=5).json()["objects"], 10, "a live call", interval=0.05)
        serve.kill9()

        hooks.start()  # the receiver is back, callfork is not: nothing can arrive
        second = ServeProcess(config, ports["http"]).start()
        assert hooks.wait_for(lambda: len(hooks.answered(200)) == 3, 15), second.output()
        got = [idempotency_key(r) for r in hooks.answered(200)]
        assert got == keys  # each once, in the call's order
        assert [r.form["Event"] for r in hooks.answered(200)][0] == "Record"
        record = requests.get(f"{second.http_url}/api/v1/Account/MA_LOCAL/Call/{call.uuid}/Timeline/",
                              headers=headers, timeout=5).json()
        def all_delivered():
            rec = requests.get(f"{second.http_url}/api/v1/Account/MA_LOCAL/Call/{call.uuid}/Timeline/",
                               headers=headers, timeout=5).json()
            return rec if all(w["status"] == "delivered" for w in rec["webhooks"]) else None
        record = wait_until(all_delivered, 5, "every webhook delivered", interval=0.05)
        assert record["call"]["status"] == "completed"
        # the call the dead process was running is not "live" any more, and its record says why
        assert requests.get(f"{second.http_url}/api/v1/Account/MA_LOCAL/Call/", headers=headers,
                            timeout=5).json()["objects"] == []
        stale = requests.get(f"{second.http_url}/api/v1/Account/MA_LOCAL/Call/{live.uuid}/", headers=headers,
                             timeout=5).json()
        assert stale["status"] == "completed" and "callfork stopped during the call" in stale["error"]
        live.wait(10)  # the simulated FreeSWITCH hung it up when callfork's socket closed
    finally:
        serve.stop()
        if second is not None:
            second.stop()
        sim.stop()
        app.stop()
        hooks.stop()


def test_kill_9_during_a_delivery_redelivers_it_with_the_same_key(tmp_path):
    ports = serve_ports()
    seen = []

    def respond(req):
        seen.append(req)
        # the first attempt hangs (callfork dies meanwhile); later ones are answered
        return Reply(hold=True, hold_status=503) if len(seen) == 1 else Reply(200)

    hooks = HttpReceiver(responder=respond, hold_timeout=20).start()
    app = AppServer().start()
    doc = app.document("/answer", "<Response><Hangup/></Response>")
    config = write_serve_config(tmp_path / "callfork.toml", ports, number_table(doc, hooks.url("/hangup")),
                                webhooks=RETRY)
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), socket_target=("127.0.0.1", ports["outbound"])).start()
    serve = ServeProcess(config, ports["http"])
    second = None
    try:
        serve.start()
        sim.place_call(CallScript(to="1000", hangup_after=30)).wait(10)
        assert hooks.wait_for(lambda: len(seen) == 1, 10)
        serve.kill9()  # the Hangup webhook is in flight: its outcome is unknown
        second = ServeProcess(config, ports["http"]).start()
        assert hooks.wait_for(lambda: len(hooks.answered(200)) == 1, 10), second.output()
        assert idempotency_key(hooks.answered(200)[0]) == idempotency_key(seen[0])  # the same key: the receiver can dedupe
        assert hooks.answered(200)[0].form == seen[0].form
    finally:
        hooks.release()
        serve.stop()
        if second is not None:
            second.stop()
        sim.stop()
        app.stop()
        hooks.stop()
