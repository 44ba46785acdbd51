"""The parameters of the Vobiz hangup webhook (https://docs.vobiz.ai/xml/request/call-status), built from
FreeSWITCH's CHANNEL_HANGUP_COMPLETE.

Times are the server's local time (`YYYY-MM-DD HH:MM:SS`, as Vobiz uses the console's timezone);
`SessionStart` is UTC with microseconds. `BillDuration` is the billed seconds rounded up to the
60-second pulse Vobiz reports (0 when the call was never answered). `Error` carries callfork's
explanation when the call ended because of an error (empty otherwise).
"""
from __future__ import annotations

import math
import time

from .hangup_codes import CallEnd


def _stamp(epoch: float | None) -> str:
    if not epoch:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _epoch(complete, name: str) -> float | None:
    if complete is None:
        return None
    raw = complete.get(f"variable_{name}_uepoch") or ""
    try:
        value = int(raw) / 1e6
    except ValueError:
        return None
    return value or None


def hangup_params(ctx, complete, end: CallEnd, fs_cause: str | None) -> dict:
    """The webhook of a call that reached callfork: its times from CHANNEL_HANGUP_COMPLETE."""
    start = _epoch(complete, "start") or ctx.session_start.timestamp()
    # without CHANNEL_HANGUP_COMPLETE (socket lost) the answer time callfork saw is used
    answer = _epoch(complete, "answer") if complete is not None else getattr(ctx, "answered_at", None)
    finish = _epoch(complete, "end") or time.time()
    # every problem of the call, in order (skipped <Play>s, ignored <DTMF>, ..., then what ended it)
    return hangup_fields(ctx.params(), end, fs_cause, start=start, answer=answer, finish=finish,
                         error="; ".join(ctx.errors) or end.error)


def hangup_fields(base: dict, end: CallEnd, fs_cause: str | None, *, start: float, answer: float | None,
                  finish: float, error: str, status: str | None = None, duration: int | None = None) -> dict:
    """The hangup webhook: `base` (the call's request parameters) plus how and when it ended. Also
    for an outbound call that never reached callfork (its originate failed), which has no context."""
    duration = max(0, int(round(finish - start))) if duration is None else duration
    billed = max(0.0, finish - answer) if answer else 0.0
    # an answered call is billed at least one 60 s pulse, however short it was
    bill_duration = max(1, int(math.ceil(billed / 60.0))) * 60 if answer else 0
    if status is None:
        status = "completed" if answer else {3010: "busy", 3000: "no-answer", 1000: "cancel"}.get(end.code, "completed")
    fields = dict(base)
    fields.update(
        Event="Hangup",
        CallStatus=status,
        HangupCause=fs_cause or end.fs_cause,
        HangupCauseCode=end.code,
        HangupCauseName=end.name,
        HangupSource=end.source,
        Duration=duration,
        BillDuration=bill_duration,
        StartTime=_stamp(start),
        AnswerTime=_stamp(answer),
        EndTime=_stamp(finish),
        TotalCost="0.00000",
        Error=error or "",
    )
    return {k: "" if v is None else str(v) for k, v in fields.items()}
