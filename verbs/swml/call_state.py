"""SWML connect's call_state_url webhooks: the `calling.call.state` JSON body SignalWire posts for
each leg a connect dials, and which of a leg's states (created, ringing, answered, ended) its
destination asked for.

The body follows SignalWire's CallState reference
(https://developer.signalwire.com/sdks/realtime-sdk/voice/call-state): `event_type`,
`event_channel`, `timestamp`, `project_id`, `space_id`, and `params` with the leg's `call_id` and
`node_id`, `device` ({type: phone|sip, params: {from_number, to_number}} for a phone,
{from, to} for sip), `parent` (the call that dialled it), `peer` (once it is bridged to the
caller), `call_state`, `direction` "outbound", and `start_time` / `answer_time` / `end_time` in
epoch milliseconds (0 until known) and `end_reason` on `ended`. What the reference leaves open
(the times' unit, end_reason's words) is decided in docs/decisions.md.
"""
from __future__ import annotations

import time

from .method import swml_event

STATES = ("created", "ringing", "answered", "ended")
DEFAULT_EVENTS = ("ended",)

# FreeSWITCH hangup cause -> SignalWire end_reason
# (a leg that was never answered and ends with ALLOTTED_TIMEOUT ran out of ring time: noAnswer)
END_REASONS = {"NORMAL_CLEARING": "hangup", "NORMAL_UNSPECIFIED": "hangup", "ALLOTTED_TIMEOUT": "hangup",
               "ORIGINATOR_CANCEL": "cancel", "LOSE_RACE": "cancel", "USER_BUSY": "busy",
               "NO_ANSWER": "noAnswer", "NO_USER_RESPONSE": "noAnswer", "PROGRESS_TIMEOUT": "noAnswer",
               "CALL_REJECTED": "decline"}
RING_TIMEOUT_CAUSES = ("NO_ANSWER", "ALLOTTED_TIMEOUT", "PROGRESS_TIMEOUT", "NO_USER_RESPONSE")


def end_reason(leg) -> str:
    if leg.answered_at is None and leg.hangup_cause in RING_TIMEOUT_CAUSES:
        return "noAnswer"
    return END_REASONS.get(leg.hangup_cause, "error")


def _ms(epoch_s) -> int:
    return int(round(epoch_s * 1000)) if epoch_s else 0


class CallStateReporter:
    """Posts the states a connect's destinations asked for. `destinations[leg.position - 1]` is the
    parsed destination of each leg (its call_state_url and call_state_events)."""

    def __init__(self, call, destinations: list):
        self.call = call
        self.destinations = destinations
        self.started: dict = {}       # leg uuid -> epoch s of its first event

    # Dialer callbacks ------------------------------------------------------------------------
    def on_state(self, kind: str, leg) -> None:
        if kind == "created":   # leg.started is monotonic: its epoch time
            self.started[leg.uuid] = time.time() - (time.monotonic() - leg.started)
        self._post("created" if kind == "created" else "ringing", leg)

    def on_leg(self, kind: str, leg) -> None:
        if kind == "answer":
            self._post("answered", leg)
        elif kind == "hangup":
            self._post("ended", leg)

    # the body --------------------------------------------------------------------------------
    def _post(self, state: str, leg) -> None:
        dest = self.destinations[leg.position - 1]
        if not dest.call_state_url or state not in dest.call_state_events:
            return
        body = swml_event(self.call, "calling.call.state", self.params(state, leg))
        self.call.post(dest.call_state_url, "POST", body, "calling.call.state", encoding="json")

    def params(self, state: str, leg) -> dict:
        call = self.call
        if leg.target.kind == "sip":
            device = {"type": "sip", "params": {"from": leg.from_number, "to": leg.to}}
        else:
            device = {"type": "phone", "params": {"from_number": leg.from_number, "to_number": leg.to}}
        params = {"call_id": leg.uuid, "node_id": call.uuid, "segment_id": leg.uuid, "device": device, "direction": "outbound",
                  "parent": {"call_id": call.uuid, "node_id": call.uuid, "device_type": "phone"},
                  "call_state": state,
                  "start_time": _ms(self.started.get(leg.uuid)),
                  "answer_time": _ms(leg.answered_at) if state in ("answered", "ended") else 0,
                  "end_time": 0}
        if leg.connected:
            params["peer"] = {"call_id": call.uuid, "node_id": call.uuid}
        if state == "ended":
            params["end_time"] = _ms(time.time())
            params["end_reason"] = end_reason(leg)
        return params
