"""Dialling from a call: ring one or more B-legs at once, bridge the caller to the first that
answers, and report what each leg did. The machinery behind Vobiz <Dial> (verbs/vobiz/dial.py),
TwiML <Dial> (verbs/twiml/dial.py) and SWML connect; `run_dial_verb` is what the two Dial verbs share.

FreeSWITCH does the ringing and the race: the caller's channel runs `bridge` with every leg in one
dial string, legs separated by `,` (they ring at once; the first to answer wins and the others end
with LOSE_RACE). Each leg carries its own variables in `[...]`: the UUID we give it, the tag that
names the call that dialled it (esl_app.LegEvents follows the legs by their UUIDs), its ring timeout (`leg_timeout`), caller id,
SIP headers, and what runs when it answers (`execute_on_answer_N`: the time limit as a
`sched_hangup`, digits to send). The caller's channel is told to stay up after the bridge
(`hangup_after_bridge=false`, `continue_on_fail=true`), to end the bridge on `*` when asked
(`bridge_terminate_key`), and, once answered, to hear a ringback tone while the legs ring.

The dial string and the values it may carry are verbs/dial_plan.py's; this module runs it.

While this node's drain keeps FreeSWITCH paused for inbound channels (`call.services.
loopback_refusal()`, callfork/drain.py), a leg to `loopback/...` cannot be created: mod_loopback's
second leg is inbound, and its first would ring for its whole timeout and fail NO_ANSWER. Such legs
are left out of the dial string (`refused`, logged with the call's UUID and why); when no leg is
left, the dial fails at once: status failed, NORMAL_TEMPORARY_FAILURE, nothing rang. Legs to
`sofia/...` are outbound and are dialled as ever.

`Dialer.run()` blocks in the call's greenlet until the bridge app completes and every leg has
hung up (or a short grace has passed), calling `on_leg(kind, leg)` for each leg's answer
(`answer`), its bridge to the caller (`connected`) and its end (`hangup`), in that order per leg.

Serial dialling (SWML connect): targets carry a `group`; the groups are tried one after the other
(FreeSWITCH's failover: groups separated by `|`, `originate_continue_on_timeout=true` so a group
that rings out does not end the dial), the legs of one group ring at once. A leg of a later group
is created only when the earlier group failed, so its ring time starts when that group ended, and
after a bridge the groups behind the winner's are never tried (their legs are not waited for).
`on_state(kind, leg)`, when given, also hears `created` (when the leg's group starts: the bridge
for the first group, the end of the group before for the others; FreeSWITCH's CHANNEL_CREATE is not
among the leg events followed) and `ringing` (its first progress event).
"""
from __future__ import annotations

import logging
import time

import gevent.queue

from esl_app import CallGone, ESLError

from .dial_plan import DialError, DialPlan, DialResult, Leg, is_loopback, leg_timeout, leg_value, make_legs
from .dial_plan import dial_string as build_dial_string
from .digit_patterns import DigitMatcher
from .flow import EndCall
from .hangup_codes import CallEnd

log = logging.getLogger("callfork.dial")

RINGBACK_TONE = "%(2000,4000,440,480)"      # the US ringback FreeSWITCH calls ${us-ring}
LEGS_GRACE_S = 3.0        # after the bridge app returns, how long the legs' last events may take
DIGITS_GAP_S = 3.0
BRIDGE_DONE, INTERRUPTED = object(), object()   # what the Dialer's inbox carries besides events        # a pause this long starts a new digit sequence for digitsMatch

NO_ANSWER_CAUSES = ("NO_ANSWER", "ALLOTTED_TIMEOUT", "PROGRESS_TIMEOUT")
# a leg ending with one of these (or with NO_ANSWER before its ring timeout: what a loopback leg
# reports when the caller hangs up) may have been ended by either side: its DialHangup waits until
# the bridge app has returned, when the caller's channel says whether it is gone
EITHER_SIDE_CAUSES = ("NORMAL_CLEARING", "NORMAL_UNSPECIFIED", "ORIGINATOR_CANCEL")
TIMEOUT_CAUSES = ("NO_USER_RESPONSE", "RECOVERY_ON_TIMER_EXPIRE")


def run_dial_verb(call, what: str, plan: DialPlan, on_leg, on_state=None, recording=None) -> DialResult:
    """What a Dial verb (Vobiz <Dial>, TwiML <Dial>) does around the Dialer: `recording` (a
    verbs/dial_recording.py DialRecording, or None) starts when a callee is connected and stops when
    the dial ends; `on_leg(dialer, kind, leg)` hears every leg report; a dial the dial string cannot
    carry ends the call (the error logged once, as `what`); the outcome goes to the call's timeline."""
    def leg_report(kind, leg):
        if kind == "connected" and recording is not None:
            recording.start()
        on_leg(dialer, kind, leg)

    dialer = Dialer(call, plan, on_leg=leg_report, on_state=on_state)
    try:
        result = dialer.run()
    except DialError as exc:
        call.error(f"{what}: {exc}")
        raise EndCall(CallEnd(5000, "Error", "NORMAL_CLEARING", str(exc))) from None
    finally:
        if recording is not None:
            recording.stop()
    bridged = result.bridged_leg
    call.timeline("dial_result", {"status": result.status, "cause": result.hangup_cause,
                                  "b_leg": bridged.uuid if bridged else ""})
    return result


class Dialer:
    def __init__(self, call, plan: DialPlan, on_leg=None, on_state=None):
        self.call = call
        self.plan = plan
        self.on_leg = on_leg or (lambda kind, leg: None)
        self.on_state = on_state or (lambda kind, leg: None)
        self.legs: list[Leg] = []
        self.refused: list[Leg] = []       # loopback legs left out while the switch is paused
        self.started = time.monotonic()
        self._held_hangups: list[Leg] = []
        self._matchers = {"aleg": DigitMatcher(plan.digits_match, DIGITS_GAP_S),
                          "bleg": DigitMatcher(plan.digits_match_b_leg, DIGITS_GAP_S)}
        self._outcome_known = False

    # -- the dial string ----------------------------------------------------------------------
    def dial_string(self) -> str:
        """The legs' dial string ('' when every leg was refused: see `_refuse_loopback`)."""
        self.legs = make_legs(self.plan, self.call.from_number)
        self._refuse_loopback()
        if not self.legs:
            return ""
        return build_dial_string(self.plan, self.legs, self.call.uuid, self.call.config.freeswitch)

    def _refuse_loopback(self) -> None:
        """Leave out the loopback legs while the switch cannot create them (module docstring)."""
        ask = getattr(getattr(self.call, "services", None), "loopback_refusal", None)
        refusal = ask() if ask is not None else ""
        if not refusal:
            return
        freeswitch = self.call.config.freeswitch
        self.refused = [leg for leg in self.legs if is_loopback(leg.target, freeswitch)]
        if not self.refused:
            return
        self.legs = [leg for leg in self.legs if leg not in self.refused]
        for leg in self.refused:
            leg.hangup_cause = "NORMAL_TEMPORARY_FAILURE"
        log.warning("call %s: dial: leg(s) %s (%s) not dialled: %s%s", self.call.uuid,
                    ",".join(str(leg.position) for leg in self.refused),
                    ", ".join(leg.to for leg in self.refused), refusal,
                    "; the dial fails at once" if not self.legs else "; the other legs are dialled")

    @property
    def serial(self) -> bool:
        return len({target.group for target in self.plan.targets}) > 1

    def leg_timeout(self, leg: Leg) -> int:
        return leg_timeout(self.plan, leg)

    # -- running it ---------------------------------------------------------------------------
    def run(self) -> DialResult:
        call, session = self.call, self.call.session
        dial_string = self.dial_string()
        if not self.legs:   # every leg was refused: nothing to wait for
            self.legs = self.refused
            call.timeline("dial", {"legs": [{"uuid": leg.uuid, "to": leg.to} for leg in self.legs],
                                   "refused": "inbound channels paused (drain)"})
            return DialResult("failed", False, "NORMAL_TEMPORARY_FAILURE", None, self.legs, False)
        legs_by_uuid = {leg.uuid: leg for leg in self.legs}
        if self.plan.ringback_file:
            ringback, instant = self.plan.ringback_file, "true"
        else:
            ringback, instant = (RINGBACK_TONE if (self.plan.ringback and call.answered) else ""), ""
        a_vars = {"hangup_after_bridge": "false", "continue_on_fail": "true",
                  "bridge_terminate_key": "*" if self.plan.hangup_on_star else "",
                  "ringback": ringback, "instant_ringback": instant,
                  "originate_continue_on_timeout": "true" if self.serial else ""}
        for name, value in a_vars.items():
            session.set_var(name, value)
        leg_uuids = [leg.uuid for leg in self.legs]
        try:
            leg_events = call.services.watch_legs(leg_uuids)
        except ESLError as exc:     # connect the caller anyway; only the legs' reports are lost
            call.error(f"<Dial>: {exc}; the callbackUrl events of this Dial are not sent")
            leg_events = gevent.queue.Queue()
        # one inbox, read by this greenlet only: the legs' events, the caller's own bridge and digits,
        # the bridge app's completion and a REST transfer's interruption
        inbox = leg_events
        own = lambda event: inbox.put(event)  # noqa: E731  (runs in the ESL dispatch greenlet)
        for name in ("CHANNEL_BRIDGE", "DTMF"):
            session.on_event(name, own)
        interrupted = lambda _event: inbox.put(INTERRUPTED)  # noqa: E731
        call.interrupted.rawlink(interrupted)
        caller_gone = False
        completion = None
        try:
            call.timeline("dial", {"legs": [{"uuid": leg.uuid, "to": leg.to} for leg in self.legs]})
            execution = session.execute_async("bridge", dial_string)
            execution.on_done(lambda _execution: inbox.put(BRIDGE_DONE))
            first = min((leg.target.group for leg in self.legs), default=0)
            for leg in self.legs:
                if leg.target.group == first:
                    self._announce(leg)
            done_at = None
            while True:
                wait = None if done_at is None else max(0.0, done_at + LEGS_GRACE_S - time.monotonic())
                try:
                    item = inbox.get(timeout=wait)
                except gevent.queue.Empty:
                    break                       # the grace after the bridge app is over
                if item is BRIDGE_DONE:
                    done_at = time.monotonic()
                    try:
                        completion = execution.wait(0)
                    except CallGone:
                        caller_gone = True
                    self._release_hangups(caller_gone or session.gone)
                elif item is INTERRUPTED:
                    if not execution.done:
                        self._kill_legs()
                elif item.get("Unique-ID") == call.uuid:
                    self._on_own_event(item, legs_by_uuid)
                else:
                    self._on_leg_event(item, legs_by_uuid)
                if done_at is not None and all(leg.done or self._never_tried(leg) for leg in self.legs):
                    break
        finally:
            call.services.unwatch_legs(leg_uuids)
            for name in ("CHANNEL_BRIDGE", "DTMF"):
                session.off_event(name, own)
            call.interrupted.unlink(interrupted)
            self._release_hangups(caller_gone or session.gone)
        if not caller_gone:
            for name in ("bridge_terminate_key", "ringback", "instant_ringback", "originate_continue_on_timeout"):
                if a_vars[name]:
                    try:
                        session.set_var(name, "")
                    except CallGone:
                        caller_gone = True
        return self._result(completion, caller_gone or session.gone)

    def _never_tried(self, leg: Leg) -> bool:
        """A leg of a group behind the bridged leg's: FreeSWITCH never created it."""
        bridged = next((other for other in self.legs if other.connected), None)
        return not leg.seen and bridged is not None and leg.target.group > bridged.target.group

    def _kill_legs(self):
        for leg in self.legs:
            if not leg.done and not leg.ended_by_request:
                leg.ended_by_request = True
                try:
                    self.call.session.api(f"uuid_kill {leg.uuid} NORMAL_CLEARING")
                except Exception as exc:
                    log.info("call %s: could not end leg %s: %s", self.call.uuid, leg.uuid, exc)

    def _on_own_event(self, event, legs_by_uuid):
        if event.name == "DTMF":
            self._digit("aleg", event.get("DTMF-Digit") or "")
            return
        leg = legs_by_uuid.get(event.get("Other-Leg-Unique-ID") or event.get("Bridge-B-Unique-ID"))
        if leg is not None:
            self._connected(leg)

    def _digit(self, by, digit):
        """A digit pressed while bridged, matched against digitsMatch / digitsMatchBLeg: when the
        digits pressed since the last match (or a pause of DIGITS_GAP_S) end with a pattern, the
        bridged leg reports `digits`."""
        leg = next((leg for leg in self.legs if leg.connected and not leg.done), None)
        if leg is None:
            return
        pattern = self._matchers[by].press(digit)
        if pattern is not None:
            leg.digits_matched, leg.digits_by = pattern, by
            self.on_leg("digits", leg)

    def _on_leg_event(self, event, legs_by_uuid):
        leg = legs_by_uuid.get(event.get("Unique-ID"))
        if leg is None:
            return
        name = event.name
        leg.seen = True
        self._announce(leg)
        if name == "DTMF":
            if leg.connected:
                self._digit("bleg", event.get("DTMF-Digit") or "")
        elif name in ("CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA"):
            if not leg.rang:
                self.on_state("ringing", leg)
            leg.rang = True
            if name == "CHANNEL_PROGRESS_MEDIA" and leg.target.send_on_preanswer:
                self._send_digits(leg)
        elif name == "CHANNEL_ANSWER" and leg.answered_at is None:
            leg.rang = True
            leg.answered_at = time.time()
            self._send_digits(leg)
            self.on_leg("answer", leg)
        elif name == "CHANNEL_BRIDGE":
            self._connected(leg)
        elif name == "CHANNEL_HANGUP_COMPLETE" and leg.hangup is None:
            leg.hangup = event
            leg.ended = time.monotonic()
            leg.hangup_cause = event.get("Hangup-Cause") or event.get("variable_hangup_cause") or ""
            if leg.answered_at is None and event.get("variable_answer_epoch", "0") not in ("", "0"):
                leg.answered_at = float(event.get("variable_answer_epoch"))
            either_side = leg.hangup_cause in EITHER_SIDE_CAUSES or (
                leg.hangup_cause in NO_ANSWER_CAUSES and not self.timed_out(leg))
            if self._outcome_known or not either_side:
                leg.ended_by_caller = self._outcome_known and self.call.session.gone
                self.on_leg("hangup", leg)
            else:
                self._held_hangups.append(leg)
            self._next_group_starts(leg)

    def _next_group_starts(self, leg: Leg):
        """Serial dialling: when every leg of a group has ended, the next group starts ringing."""
        group = leg.target.group
        if not all(other.done for other in self.legs if other.target.group == group):
            return
        later = [other.target.group for other in self.legs if other.target.group > group]
        for other in self.legs:
            if later and other.target.group == min(later) and not other.seen:
                other.started = time.monotonic()
                self._announce(other)

    def _announce(self, leg: Leg):
        if not leg.announced:
            leg.announced = True
            self.on_state("created", leg)

    def _send_digits(self, leg):
        """sendDigits, once, when the leg answers (or opens early media, with sendOnPreanswer). Sent
        from here (uuid_send_dtmf: it queues them, `w`/`W` pauses included, and returns) rather than
        by the leg's execute_on_answer, which mod_loopback would copy to its far leg as well."""
        if not leg.target.send_digits or leg.digits_sent:
            return
        leg.digits_sent = True
        digits = leg_value("sendDigits", leg.target.send_digits)
        try:
            reply = self.call.session.api(f"uuid_send_dtmf {leg.uuid} {digits}")
        except CallGone:
            return
        if not reply.startswith("+OK"):
            self.call.error(f"<Dial>: could not send digits to leg {leg.position} ({reply.strip()})")

    def _release_hangups(self, caller_gone):
        self._outcome_known = True
        held, self._held_hangups = self._held_hangups, []
        for leg in held:
            leg.ended_by_caller = caller_gone
            if caller_gone and leg.answered_at is None:
                leg.hangup_cause = "ORIGINATOR_CANCEL"
            self.on_leg("hangup", leg)

    def _connected(self, leg):
        if leg.connected:
            return
        if leg.answered_at is None:   # its answer event was lost or comes later: say it first
            leg.rang = True
            leg.answered_at = time.time()
            self.on_leg("answer", leg)
        leg.connected = True
        self.on_leg("connected", leg)

    # -- the outcome --------------------------------------------------------------------------
    def _result(self, completion, caller_gone) -> DialResult:
        bridged = next((leg for leg in self.legs if leg.connected), None)
        rang = any(leg.rang for leg in self.legs)
        disposition = ""
        if completion is not None:
            disposition = (completion.get("variable_originate_disposition")
                           or completion.get("variable_DIALSTATUS") or "")
        if bridged is not None:
            cause = bridged.hangup_cause or (completion.get("variable_last_bridge_hangup_cause")
                                             if completion is not None else "") or "NORMAL_CLEARING"
            return DialResult("completed", True, cause, bridged, self.legs, caller_gone)
        causes = [leg.hangup_cause for leg in self.legs if leg.hangup_cause]
        cause = disposition if disposition and disposition not in ("SUCCESS", "ANSWER") else ""
        cause = cause or (causes[0] if causes else "") or ("ORIGINATOR_CANCEL" if caller_gone else "NORMAL_TEMPORARY_FAILURE")
        if caller_gone or "ORIGINATOR_CANCEL" in causes + [cause]:
            status, cause = "cancel", "ORIGINATOR_CANCEL"
        elif "USER_BUSY" in causes + [cause]:
            status, cause = "busy", "USER_BUSY"
        elif cause in NO_ANSWER_CAUSES or any(c in NO_ANSWER_CAUSES for c in causes):
            status, cause = "no-answer", "NO_ANSWER"
        elif cause in TIMEOUT_CAUSES:
            status = "timeout"
        else:
            status = "failed"
        return DialResult(status, rang, cause, None, self.legs, caller_gone)

    def timed_out(self, leg: Leg) -> bool:
        """Did the leg end because its ring timeout ran out (not because the callee refused)?"""
        if leg.answered_at is not None or leg.hangup_cause not in NO_ANSWER_CAUSES or leg.ended is None:
            return False
        return leg.ended - leg.started >= self.leg_timeout(leg) - 1.0
