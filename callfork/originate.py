"""Calls placed through the REST API (`POST .../Call/`): `Originations` builds and sends the
`originate` (its channel variables escaped for FreeSWITCH's three splittings, `variable_block`; what
cannot be escaped refused), keeps each call's URLs and parties until FreeSWITCH's `socket` app brings
the call to the outbound server (`number_for`), and, when the originate fails, records the call and
posts its Hangup webhook itself, since the call never reaches callfork.

A call placed through Twilio's API (`api="twilio"`, callfork/twilio_api.py) differs in what is posted:
its StatusCallback (verbs/twiml/status_callback.py) gets `initiated` when the originate is sent,
`ringing` when the new channel rings (its CHANNEL_PROGRESS / CHANNEL_PROGRESS_MEDIA, followed on the
service's LegEvents connection until the call reaches callfork or fails), and, when the originate
fails, `completed` with CallStatus busy / no-answer / canceled / failed instead of the Hangup
webhook; the interpreter posts `answered` and `completed` once the call runs, numbering on from the
callbacks posted here (`status_callback_sequence`). Its record exists from the start (status
ringing in the store; `status_of` says queued until the channel rings), so the API can show it.

In a cluster, what is kept of the call while it is placed (its registry entry, so that a cancel sent
to another node reaches it; its hangup hook, for the node that closes a dead node's calls) is
callfork/placing_cluster.py's. `cancel` ends any call still being placed: Twilio's
Status=canceled|completed and Vobiz's `DELETE Call/<uuid>/`.

The webhooks' From / To / CallerName come from the request kept here, not from the channel:
FreeSWITCH flips caller and callee id on a channel it originates, so the channel's caller id is
"Outbound Call" <the dial string's last part> ("default" for loopback/N/default, the number called
for a gateway) and its destination is the endpoint's (tests/fixtures/fs-captures/originate-callerid.json).
"""
from __future__ import annotations

import logging
import re
import uuid as uuidlib
from datetime import datetime, timezone
from types import SimpleNamespace

import gevent
import gevent.queue

from fsargs import quote_api_arg
from verbs import CallEnd, hangup_fields, plain_number
from verbs.twiml.request_params import twilio_params
from verbs.twiml.status_callback import StatusCallback, completed_extra

from .placing_cluster import PlacingCluster

log = logging.getLogger("callfork.service")


class Originations:
    def __init__(self, service):
        self.service = service   # config, store, outbox, control and record_event of the running service
        self._pending: dict[str, dict] = {}   # call uuid -> what a REST originate asked for
        self.cluster_hooks = PlacingCluster(service)   # what a cluster keeps of a call while it is placed
        self._requests: dict[str, str] = {}   # request uuid -> call uuid, while the call is pending

    def originate(self, *, from_number, to, answer_url, answer_method="POST", hangup_url="",
                  hangup_method="POST", caller_name="", time_limit=14400, ring_timeout=60,
                  fallback_url="", fallback_method="POST", api="vobiz", answer_document="",
                  status_callback_events=("completed",), call_uuid=None) -> str:
        """Place an outbound call; it comes back to the outbound server through `socket`.
        Returns the request UUID at once (the call proceeds in the background, as on Vobiz).
        ValueError (nothing was dialled) when a value cannot go safely into the originate command.
        A Twilio call (`api="twilio"`): `hangup_url`/`hangup_method` are its StatusCallback, which
        gets `status_callback_events`; `answer_document` is a document to run instead of fetching
        `answer_url`; `call_uuid` the UUID the caller chose for it (its Call SID is made from it)."""
        if not _DIAL_TEXT.fullmatch(str(to)):
            raise ValueError("to: a number or SIP-style destination (letters, digits and + * # . @ / : _ -)")
        if not _DIAL_TEXT.fullmatch(str(from_number)):
            raise ValueError("from: a number (letters, digits and + * # . @ / : _ -)")
        request_uuid = str(uuidlib.uuid4())
        call_uuid = str(uuidlib.UUID(call_uuid)) if call_uuid else str(uuidlib.uuid4())
        variables = {
            "origination_uuid": call_uuid,
            "origination_caller_id_number": from_number,
            "origination_caller_id_name": caller_name or from_number,
            "originate_timeout": ring_timeout,
            "callfork_request_uuid": request_uuid,
            # the call is answered before callfork gets it: park must find this set when media came
            # up, or it writes no audio while the call idles (verbs/idle_audio.py)
            "send_silence_when_idle": -1,
            "callfork_to": to,
            "callfork_answer_url": answer_url,
            "callfork_answer_method": answer_method,
            "callfork_hangup_url": hangup_url,
            "callfork_hangup_method": hangup_method,
            "callfork_fallback_url": fallback_url,
            "callfork_fallback_method": fallback_method,
            "callfork_time_limit": time_limit,
            "callfork_api": api,
            "callfork_answer_document": answer_document,
        }
        if api == "twilio":
            variables["status_callback"] = StatusCallback(hangup_url, hangup_method, status_callback_events)
            variables["twilio_status"] = "queued"
        # Only what FreeSWITCH needs goes into the originate command; the URLs stay here, keyed by
        # the call's uuid (a URL's commas would be split by originate's {a=b,c=d} parsing).
        on_channel = ("origination_uuid", "origination_caller_id_number", "origination_caller_id_name",
                      "originate_timeout", "callfork_request_uuid", "send_silence_when_idle")
        block = variable_block({k: variables[k] for k in on_channel})
        dialstring = self.service.config.freeswitch.originate_dialstring.replace("{to}", to)
        own = getattr(self.service, "own_outbound", None)   # a worker's own listener (callfork/service.py)
        target = "%s:%s" % own.address if own is not None else self.service.config.server.outbound_listen
        command = f"originate {block}{dialstring} &socket('{target} async full')"
        self._pending[call_uuid] = variables
        self._requests[request_uuid] = call_uuid
        self.service.store.add_event(call_uuid, "originate", {"request_uuid": request_uuid, "to": to, "from": from_number,
                                                      "answer_url": answer_url})
        if api == "twilio":   # shown by the API from now on (the store has no "queued": see status_of)
            self.service.store.upsert_call(call_uuid, direction="outbound", from_number=plain_number(from_number),
                                           to_number=plain_number(to), answer_url=answer_url, status="ringing",
                                           start_time=datetime.now(timezone.utc).timestamp())
        self.cluster_hooks.placed(call_uuid, variables, answer_url)
        self._keep_hook(call_uuid, variables)
        gevent.spawn(self._dial, command, request_uuid, call_uuid, variables)
        return request_uuid

    def _keep_hook(self, call_uuid, variables) -> None:
        """(In a cluster with a shared store) what the call's end webhook needs, kept again while it
        is being placed (callfork/placing_cluster.py)."""
        if call_uuid in self._pending:
            self.cluster_hooks.keep_hook(
                call_uuid, variables,
                vobiz_base=lambda started: self._vobiz_base(call_uuid, variables["callfork_request_uuid"],
                                                            variables, started),
                twilio_base=lambda: twilio_params(self._party(call_uuid, variables)))

    def pending(self, call_uuid: str) -> bool:
        """Is the call being placed here (dialled, not yet at callfork, not failed)?"""
        return call_uuid in self._pending

    def pending_calls(self) -> list[str]:
        """The UUIDs of the calls being placed here."""
        return list(self._pending)

    def call_of_request(self, request_uuid: str) -> str | None:
        """The call UUID of a request (`POST Call/`'s request_uuid) whose call is being placed here or
        runs here (its session has the request UUID in its `callfork_request_uuid` channel variable);
        None for a request that failed, ended, or is not this node's."""
        pending = self._requests.get(request_uuid)
        if pending is not None:
            return pending
        for uuid, ctx in list(self.service.calls.items()):
            if ctx.session.variables.get("callfork_request_uuid") == request_uuid and not ctx.session.gone:
                return uuid
        return None

    def arrived(self, call_uuid: str) -> bool:
        """The service runs the call now (it is among its live calls): no longer pending here. True
        when it was cancelled on its way (the service then hangs it up)."""
        v = self._drop(call_uuid)
        return bool(v and v.get("callfork_canceled"))

    def _drop(self, call_uuid: str) -> dict | None:
        v = self._pending.pop(call_uuid, None)
        if v is not None:
            self._requests.pop(v["callfork_request_uuid"], None)
        return v

    def status_of(self, call_uuid: str) -> str | None:
        """A Twilio call not yet at callfork: "queued" until its channel rings, then "ringing"; None
        for any other call."""
        v = self._pending.get(call_uuid)
        return v.get("twilio_status") if v else None

    def cancel(self, call_uuid: str) -> bool:
        """End a call that has not reached callfork yet (Twilio's `Status=canceled|completed`, Vobiz's
        `DELETE Call/<uuid>/`): its originate then fails with ORIGINATOR_CANCEL (a Twilio call's
        `completed` says canceled; a Vobiz call's Hangup webhook is posted). False when it is not
        pending any more."""
        v = self._pending.get(call_uuid)
        if v is None:
            return False
        if not v.get("callfork_canceled"):
            v["callfork_canceled"] = True
            gevent.spawn(self._kill_while_pending, call_uuid, v)
        return True

    def _kill_while_pending(self, call_uuid: str, v: dict) -> None:
        """uuid_kill a cancelled call until FreeSWITCH takes it. Right after the bgapi the originate
        has not created the channel yet ("-ERR No such channel!"): try again every KILL_RETRY_S while
        the call is still being placed. (Before the bgapi, _dial sees the flag; once the call reached
        callfork, `arrived` tells the service to hang it up.)"""
        while self._pending.get(call_uuid) is v:
            try:
                reply = self.service.control.api(f"uuid_kill {call_uuid} ORIGINATOR_CANCEL")
            except Exception as exc:
                reply = f"-ERR {exc!r}"
            if reply.startswith("+OK"):
                return
            log.debug("outbound call %s: uuid_kill at cancel: %s", call_uuid, reply.strip())
            gevent.sleep(KILL_RETRY_S)

    def _dial(self, command, request_uuid, call_uuid, variables) -> None:
        """bgapi the originate; when it fails the call never reaches callfork: record it and post its
        Hangup webhook (a Twilio call: its `completed`) here."""
        started = datetime.now(timezone.utc)
        if "status_callback" in variables:
            self._post_status(call_uuid, variables, "initiated")
            self._watch_ringing(call_uuid, variables)
        if variables.get("callfork_canceled"):
            result = "-ERR ORIGINATOR_CANCEL"
        else:
            try:
                result = self.service.control.bgapi(command, timeout=int(variables["originate_timeout"]) + 30)
            except Exception as exc:
                result = f"-ERR {exc}"
        if variables.get("callfork_canceled") and not result.startswith("+OK"):
            result = "-ERR ORIGINATOR_CANCEL"   # (FreeSWITCH says how the channel was killed)
        self._stop_watching(variables)
        if result.startswith("+OK"):
            self._await_arrival(request_uuid, call_uuid, variables, started)
            return
        self._failed(request_uuid, call_uuid, variables, started, result)

    def _await_arrival(self, request_uuid, call_uuid, variables, started) -> None:
        """The originate answered +OK: the call is on its way to callfork's socket app. A channel that
        ends before it gets there (a cancel that landed just then, the far side gone) never reaches
        callfork, so its end is posted here as an originate that failed. Looks every ARRIVAL_CHECK_S
        until the call arrived (`number_for` saw it) or its channel is gone."""
        while self._pending.get(call_uuid) is variables and not variables.get("callfork_arriving"):
            gevent.sleep(ARRIVAL_CHECK_S)
            if self._pending.get(call_uuid) is not variables or variables.get("callfork_arriving"):
                return
            try:
                exists = self.service.control.api(f"uuid_exists {call_uuid}").strip()
            except Exception:   # the control connection is away: look again
                continue
            if exists == "false" and not variables.get("callfork_arriving"):
                cause = "ORIGINATOR_CANCEL" if variables.get("callfork_canceled") else "NORMAL_CLEARING"
                self._failed(request_uuid, call_uuid, variables, started,
                             f"-ERR {cause} (the channel ended before it reached callfork)")
                return

    def _failed(self, request_uuid, call_uuid, variables, started, result: str) -> None:
        """The call never reached callfork: record it and post its Hangup webhook (a Twilio call: its
        `completed`)."""
        self._drop(call_uuid)
        self.cluster_hooks.not_placed(call_uuid)
        words = result[4:].strip().split() if result.startswith("-ERR") else []
        cause = words[0] if words and words[0].isupper() else "NORMAL_TEMPORARY_FAILURE"
        log.error("outbound call %s (request %s) to %s failed: %s", call_uuid, request_uuid,
                  variables["callfork_to"], result.strip())
        url = variables["callfork_hangup_url"] or variables["callfork_answer_url"]
        status, end = _ORIGINATE_FAILURES.get(cause, ("failed", CallEnd(5000, "Carrier", cause)))
        now = datetime.now(timezone.utc)
        error = f"originate failed: {result.strip()}"
        base = self._vobiz_base(call_uuid, request_uuid, variables, started)
        # never answered, never reached callfork: no call context, and a Duration of 0
        params = hangup_fields(base, end, cause, start=started.timestamp(), answer=None, finish=now.timestamp(),
                               error=error, status=status, duration=0)
        self.service.store.upsert_call(call_uuid, direction="outbound", from_number=base["From"],
                               to_number=base["To"], answer_url=variables["callfork_answer_url"],
                               status=status, start_time=started.timestamp(), end_time=now.timestamp(),
                               hangup_cause=cause, hangup_cause_code=end.code, hangup_cause_name=end.name,
                               hangup_source=end.source, error=error)
        self.service.record_event(call_uuid, "error", {"message": error})
        if "status_callback" in variables:   # a Twilio app: its StatusCallback's completed, no Hangup
            self._post_status(call_uuid, variables, "completed", **completed_extra(end, False, 0, error))
            return
        self.service.outbox.enqueue(call_uuid, url, variables["callfork_hangup_method"], params, event="Hangup")
        self.service.record_event(call_uuid, "webhook_queued", {"event": "Hangup", "url": url})

    def _vobiz_base(self, call_uuid, request_uuid, variables, started) -> dict:
        """The Hangup webhook's request parameters of a Vobiz call that never reached callfork."""
        return {"CallUUID": call_uuid, "RequestUUID": request_uuid, "ALegUUID": call_uuid,
                "ALegRequestUUID": request_uuid, "Direction": "outbound",
                "From": plain_number(variables["origination_caller_id_number"]),
                "To": plain_number(variables["callfork_to"]),
                "CallerName": variables["origination_caller_id_name"], "BillRate": "0",
                "SessionStart": started.strftime("%Y-%m-%d %H:%M:%S.%f"),
                "STIRAttestation": "Not Applicable", "STIRVerification": "Not Applicable",
                "ParentAuthID": self.service.config.server.auth_id}

    # -- a Twilio call's progress before it reaches callfork --------------------------------------
    def _post_status(self, call_uuid, variables, event, **extra) -> None:
        """Post `event` to the call's StatusCallback, if it asked for it (signed as Twilio signs)."""
        callback = variables["status_callback"]

        def post(url, method, params, name):
            self.service.outbox.enqueue(call_uuid, url, method, params, event=name, signer="twilio")
            self.service.record_event(call_uuid, "webhook_queued", {"event": name, "url": url})

        try:
            callback.send(post, twilio_params(self._party(call_uuid, variables)), event, **extra)
        except Exception:   # e.g. the outbox refused it: the call goes on
            log.exception("call %s: the %s status callback could not be queued", call_uuid, event)
        self._keep_hook(call_uuid, variables)   # (its sequence moved on)

    def _party(self, call_uuid, variables):
        return SimpleNamespace(uuid=call_uuid, auth_id=self.service.config.server.auth_id, direction="outbound",
                               from_number=plain_number(variables["origination_caller_id_number"]),
                               to_number=plain_number(variables["callfork_to"]),
                               caller_name=variables["origination_caller_id_name"],
                               call_status=lambda: variables["twilio_status"])

    def _watch_ringing(self, call_uuid, variables) -> None:
        """Follow the new channel's events until it reaches callfork or fails: its first
        CHANNEL_PROGRESS(_MEDIA) is the callee ringing."""
        legs = self.service.leg_events
        if not legs.connected:   # (just started, or reconnecting) its events before it is up are lost
            legs.connection.wait_connected(RING_WATCH_CONNECT_S)
        try:
            queue = legs.watch([call_uuid])
        except Exception as exc:   # (ESLError) the call goes on; only `ringing` is not seen
            log.warning("call %s: cannot follow the ringing of the call: %s", call_uuid, exc)
            return
        variables["ring_watch"] = (queue, gevent.spawn(self._ringing, call_uuid, variables, queue))

    def _ringing(self, call_uuid, variables, queue, block=True) -> None:
        while True:
            try:
                event = queue.get(block=block)
            except gevent.queue.Empty:
                return
            name = event.get("Event-Name")
            if name in ("CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA") and variables["twilio_status"] == "queued":
                variables["twilio_status"] = "ringing"
                if call_uuid in self._pending:
                    self.cluster_hooks.ringing(call_uuid)
                self.service.record_event(call_uuid, "ringing", {})
                self._post_status(call_uuid, variables, "ringing")

    def _stop_watching(self, variables) -> None:
        """Stop following the channel; what it reported until now still counts (drained here)."""
        queue, watcher = variables.pop("ring_watch", (None, None))
        if watcher is None:
            return
        watcher.kill()
        self.service.leg_events.unwatch([variables["origination_uuid"]])
        self._ringing(variables["origination_uuid"], variables, queue, block=False)

    def number_for(self, session):
        """The number entry of a call placed by `originate`, now reaching the outbound server (its
        URLs and parties were kept here, keyed by its uuid: `to`, `from_number`, `caller_name` as the
        request gave them), or None for any other call. Schedules its time limit. The call stays
        pending (a cancel or a lookup by request finds it here) until the service has it among its
        live calls and says so with `arrived`."""
        v = self._pending.get(session.uuid)
        if v is None:
            return None
        v["callfork_arriving"] = True
        self._stop_watching(v)
        if v.get("callfork_time_limit"):
            session.api(f"sched_hangup +{int(v['callfork_time_limit'])} {session.uuid} ALLOTTED_TIMEOUT")
        callback = v.get("status_callback")
        return SimpleNamespace(api=v.get("callfork_api", "vobiz"), answer_document=v.get("callfork_answer_document"),
                               status_callback_events=callback.events if callback else None,
                               status_callback_sequence=callback.sequence if callback else 0,
                               number=v["callfork_to"], to=v["callfork_to"],
                               from_number=v["origination_caller_id_number"],
                               caller_name=v["origination_caller_id_name"], answer_url=v["callfork_answer_url"],
                               answer_method=v.get("callfork_answer_method", "POST"),
                               hangup_url=v.get("callfork_hangup_url", ""),
                               hangup_method=v.get("callfork_hangup_method", "POST"),
                               fallback_url=v.get("callfork_fallback_url", ""),
                               fallback_method=v.get("callfork_fallback_method", "POST"), l16_byte_order=None)


# how often a call that FreeSWITCH placed (+OK) and callfork has not seen yet is looked for
ARRIVAL_CHECK_S = 0.5

# how often a cancel tries uuid_kill again while the originate has not created the channel yet
KILL_RETRY_S = 0.05

# how long a Twilio call's originate waits for the LegEvents connection to be up, so that its ringing
# is seen (the call is placed anyway when it is not)
RING_WATCH_CONNECT_S = 2.0

# what `to` and `from` may contain: they go into the originate command unquoted
_DIAL_TEXT = re.compile(r"[A-Za-z0-9+*#.@/:_-]{1,128}")

# why an originate failed (FreeSWITCH cause) -> (CallStatus, Vobiz hangup code)
_ORIGINATE_FAILURES = {
    "USER_BUSY": ("busy", CallEnd(3010, "Callee", "USER_BUSY")),
    "NO_ANSWER": ("no-answer", CallEnd(3000, "Callee", "NO_ANSWER")),
    "NO_USER_RESPONSE": ("no-answer", CallEnd(3000, "Callee", "NO_USER_RESPONSE")),
    "CALL_REJECTED": ("failed", CallEnd(3020, "Callee", "CALL_REJECTED")),
    "ORIGINATOR_CANCEL": ("cancel", CallEnd(1000, "Caller", "ORIGINATOR_CANCEL")),
    "PROGRESS_TIMEOUT": ("timeout", CallEnd(6010, "Vobiz", "PROGRESS_TIMEOUT")),
}


def variable_block(variables: dict) -> str:
    """originate's `{name=value,...}` channel-variable block, written as the start of the command
    line's first argument so that every value reaches the channel unchanged (ValueError for a value
    that cannot, see _originate_value)."""
    return quote_api_arg("{" + ",".join(f"{k}={_originate_value(k, v)}" for k, v in variables.items()) + "}")


def _originate_value(name: str, value) -> str:
    r"""A channel-variable value inside originate's {...} block, escaped for the two splittings
    FreeSWITCH 1.10.12 runs on the block after the command line's own (switch_event_create_brackets,
    tests/fixtures/fs-captures/originate-vars.json): the block is split on commas and the parts on
    their first `=`, both with switch_separate_string, whose cleanup drops quotes, unescapes and
    trims each part. Single quotes do not protect a comma: the command line's splitting has already
    removed them. So, inside out: for the `=` part `\\` `\'` and `\s` (a space, which the cleanup
    would trim at the ends), then for the comma split `\\` `\'` and `\,`; variable_block adds the
    command line's escapes (fsargs.quote_api_arg). `{` and `}` cannot be escaped (the block ends at
    the `}` that matches its `{`), nor can `:_:` (anywhere in the dial string it splits the string
    for an enterprise originate), and control characters are not allowed in a caller name or a
    number: ValueError."""
    text = str(value)
    bad = set(text) & set("{}")
    if bad or ":_:" in text or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        shown = "".join(sorted(bad)) or (":_:" if ":_:" in text else "control characters")
        raise ValueError(f"{name.replace('callfork_', '').replace('origination_', '')}: "
                         f"{shown!r} not allowed here")
    part = text.replace("\\", "\\\\").replace("'", "\\'").replace(" ", "\\s")
    return part.replace("\\", "\\\\").replace("'", "\\'").replace(",", "\\,")
