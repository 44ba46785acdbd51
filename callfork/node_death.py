"""The calls of a cluster node that died (killed with -9, crashed, its host gone), closed by the node
that finds out: the node's own next process at its start (a worker the supervisor restarted), or a
survivor that saw both its registrations go stale (callfork/cluster_node.py).

For each of the dead node's live call records, in order:
1. the channel is hung up on this node's FreeSWITCH (`uuid_kill <uuid> NORMAL_TEMPORARY_FAILURE`):
   FreeSWITCH 1.10.12 leaves a call whose socket app died up, silent, while an app the dead node
   started runs (callfork's waits are `sleep` slices of 600 s; tests/fixtures/fs-captures/
   socket-kill.json). A call on another FreeSWITCH is not found there ("-ERR No such channel"):
   that node's next start hangs it up;
2. the app gets the hangup webhook the node would have sent (Vobiz: `hangup_url`, else
   `answer_url`; Twilio: the StatusCallback's `completed`), built from what the node kept when the
   call started or was answered (`hangup_hook`, PgStore.set_hangup_hook) and the record's times,
   with HangupCause NORMAL_TEMPORARY_FAILURE, code 5000 (Internal Error), source Error and the
   error "node <id> died during the call". Its idempotency key is derived from the call's UUID,
   so two nodes that both close the call store one webhook (webhooks/pg_outbox.py `key`);
3. the record is closed (completed, the same cause and error, a `service_restarted` timeline row),
   by one UPDATE that only a live record matches.
The webhook is stored before the record is closed: a node that dies between the two leaves the
call live, and whoever closes it next stores the same webhook (its key) and closes it.

A Vobiz REST call the node was still placing (its callee ringing) has no record, only the hook
callfork/originate.py kept with `placing` (the node's id, when it was placed): it is hung up and
gets its Hangup webhook the same way (its times: placed, never answered), and its record is written
ended (records/pg_store.py close_placed_call); a record found there means another node did it first.
"""
from __future__ import annotations

import logging
import time
import uuid as uuidlib

from verbs import CallEnd
from verbs.hangup_codes import SOURCE_ERROR
from verbs.hangup_webhook import hangup_fields
from verbs.twiml.status_callback import StatusCallback, completed_extra

log = logging.getLogger("callfork.cluster")

CAUSE = "NORMAL_TEMPORARY_FAILURE"
KEY_NAMESPACE = uuidlib.UUID("6f1d3c2a-5b7e-4c1f-9a8d-2e4b6c8d0f13")
CONTROL_WAIT_S = 10.0   # how long the hang-ups wait for the control connection (once per close_calls)


def died(node_id: str) -> CallEnd:
    return CallEnd(5000, SOURCE_ERROR, CAUSE, f"node {node_id} died during the call")


def hangup_hook(ctx) -> dict | None:
    """What the hangup webhook of call `ctx` (a verbs.CallContext) needs, should its node die; None
    when the app asked for none."""
    base = ctx.params()
    signer = getattr(ctx.services, "signer", "vobiz")
    callback = ctx.status_callback
    if callback is not None:
        if not callback.wants("completed"):
            return None
        return {"api": "twilio", "url": callback.url, "method": callback.method, "events": list(callback.events),
                "sequence": callback.sequence, "base": base, "signer": signer}
    number = ctx.number
    url = getattr(number, "hangup_url", None) or getattr(number, "answer_url", None)
    if not url:
        return None
    return {"api": "vobiz", "url": url, "method": getattr(number, "hangup_method", None) or "POST", "base": base,
            "signer": signer}


def webhook_key(call_uuid: str) -> str:
    return str(uuidlib.uuid5(KEY_NAMESPACE, f"{call_uuid}:node-died"))


def hangup_webhook(hook: dict, record: dict, end: CallEnd, now: float) -> tuple[str, str, dict, str]:
    """(url, method, params, event) of the dead call's hangup webhook."""
    start = record.get("start_time") or now
    answer = record.get("answer_time")
    fields = hangup_fields(hook["base"], end, end.fs_cause, start=start, answer=answer, finish=now, error=end.error)
    if hook["api"] != "twilio":
        return hook["url"], hook["method"], fields, "Hangup"
    callback = StatusCallback(hook["url"], hook["method"], tuple(hook.get("events") or ("completed",)))
    callback.sequence = int(hook.get("sequence") or 0)
    extra = completed_extra(end, bool(answer), int(fields["Duration"] or 0), end.error)
    return callback.url, callback.method, callback.fields(hook["base"], "completed", **extra), "status:completed"


def close_calls(service, node_id: str) -> list[str]:
    """Close every live call record of `node_id` (see the module docstring); the UUIDs this node
    closed. PgUnavailable when PostgreSQL is away (nothing is lost: the calls stay live for the
    next try)."""
    store = service.store
    calls = store.live_calls_of(node_id)
    placing = store.placing_hooks_of(node_id)
    if node_id == getattr(service, "node_id", None):
        # this node id's previous process's calls only: a record this process created (created_at
        # on this host's clock, from this process's start) is one of its own, live here
        since = service.started_at.timestamp()
        calls = [c for c in calls if c["uuid"] not in service.calls and float(c.get("created_at") or 0) < since]
        originations = getattr(service, "originations", None)
        own = set(originations.pending_calls()) if originations is not None else set()
        placing = {u: h for u, h in placing.items() if u not in own and float(h["placing"]["at"]) < since}
    if not calls and not placing:
        return []
    hooks = store.hangup_hooks([c["uuid"] for c in calls])
    end = died(node_id)
    closed = []
    wait_s = CONTROL_WAIT_S
    for call in calls:
        uuid = call["uuid"]
        if not _hang_up(service, uuid, wait_s):
            wait_s = 0   # the control connection stayed down: the other calls do not wait for it again
        hook = hooks.get(uuid)
        now = time.time()
        if hook is not None:
            url, method, params, event = hangup_webhook(hook, call, end, now)
            try:
                service.outbox.enqueue(uuid, url, method, params, event=event, signer=hook.get("signer") or "vobiz",
                                       key=webhook_key(uuid))
            except Exception as exc:   # e.g. the outbox refused the URL: the record still says how it ended
                log.error("call %s: the hangup webhook of the dead node %s could not be queued: %r", uuid, node_id, exc)
        if store.close_call(uuid, end.error, node_id=node_id, end_time=now, hangup_cause=end.fs_cause,
                            hangup_cause_code=end.code, hangup_cause_name=end.name, hangup_source=end.source,
                            note=f"{end.error}; " + ("its hangup webhook was queued" if hook else "no hangup webhook")):
            closed.append(uuid)
        store.forget_hangup_hook(uuid)
    for uuid, hook in placing.items():
        if not _hang_up(service, uuid, wait_s):
            wait_s = 0
        if _close_placing(service, node_id, uuid, hook, end):
            closed.append(uuid)
    store.flush()
    return closed


def _close_placing(service, node_id: str, uuid: str, hook: dict, end: CallEnd) -> bool:
    """A Vobiz REST call `node_id` was placing (no record yet): its Hangup webhook, then its record,
    written ended; True if this node wrote it."""
    now = time.time()
    start = float(hook["placing"]["at"])
    url, method, params, event = hangup_webhook(hook, {"start_time": start}, end, now)
    try:
        service.outbox.enqueue(uuid, url, method, params, event=event, signer=hook.get("signer") or "vobiz",
                               key=webhook_key(uuid))
    except Exception as exc:
        log.error("call %s: the hangup webhook of the dead node %s could not be queued: %r", uuid, node_id, exc)
    base = hook["base"]
    wrote = service.store.close_placed_call(
        uuid, end.error, node_id=node_id, note=f"{end.error} while the call was placed; its hangup webhook was queued",
        direction="outbound", from_number=base.get("From"), to_number=base.get("To"),
        answer_url=hook["placing"].get("answer_url"), start_time=start, end_time=now, hangup_cause=end.fs_cause,
        hangup_cause_code=end.code, hangup_cause_name=end.name, hangup_source=end.source)
    service.store.forget_hangup_hook(uuid)
    return wrote


def _hang_up(service, uuid: str, wait_s: float) -> bool:
    """False when the control connection was down (waited for up to `wait_s`)."""
    control = service.control
    if control is None or not control.wait_connected(wait_s):
        log.error("call %s: its node died, and FreeSWITCH's control connection is down: the channel is not "
                  "hung up", uuid)
        return False
    try:
        reply = control.api(f"uuid_kill {uuid} {CAUSE}").strip()
    except Exception as exc:
        log.error("call %s: its node died, and uuid_kill failed: %r", uuid, exc)
        return True
    if reply.startswith("+OK"):
        log.warning("call %s: its node died: hung up on FreeSWITCH (%s)", uuid, CAUSE)
    return True
