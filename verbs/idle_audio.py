"""What FreeSWITCH writes to the caller while no app plays: `IdleAudio`, one per call.

mod_audio_fork (jambonz build) mixes a stream's audio only into frames the channel *writes* (an
SMBF_WRITE_REPLACE media bug), and a stereo fork (audioTrack both/outbound) takes its second track
from those frames. While a call idles in the `socket async` park loop (a keepCallAlive stream, a
<Wait>, the time between two verbs) FreeSWITCH writes a frame per read frame only when the channel
variable `send_silence_when_idle` was set the first time the channel was media-ready:
switch_ivr_park reads it once, then (switch_ivr.c). `sleep` and digit collection read it on every
call; playback, speak and `record` (record_waste_resources, on by default) always write.

So before callfork answers or pre-answers a call (`prepare`) it sets, in one `uuid_setvar_multi`:
- `send_silence_when_idle=-1` (digital silence; a value the dialplan set is kept),
- `playback_terminators=none` (FreeSWITCH's default `*` would cut any Speak/Play short),
- `record_fill_cng` so a voicemail <Record> of a caller whose phone sends no packets while silent
  (comfort noise) is as long as the time it took, not only the time they talked (FreeSWITCH writes
  nothing for CNG frames otherwise; the divisor is large enough that the fill is digital zero),
- `sleep_eat_digits=true` so a caller's digit neither ends the writer below nor stays queued.

When the call reached callfork with media already up (the dialplan answered, or an outbound call)
and the variable unset, park never writes. Then, when `needed`, `hold()` keeps FreeSWITCH's `sleep`
app running while a stream that needs written frames blocks the document or a <Wait> runs, and a
warning says once per call how to configure FreeSWITCH so that this is not needed.
"""
from __future__ import annotations

import logging
import time

from esl_app import CallGone, ESLError, ESLTimeout

log = logging.getLogger("callfork.call")

SILENCE = "-1"                 # switch_generate_sln_silence: divisor -1 = zeros
FILL_CNG = "65536"             # record_fill_cng divisor: |int16| / 65536 = 0, digital silence
HOLD_SLICE_MS = 600_000        # one `sleep` of the writer; it is restarted while still needed
POLL_S = 0.05


class IdleAudio:
    """The call's state here (no reference to the call: the call context holds it, and a cycle
    would leave every finished call to the cyclic GC)."""

    def __init__(self):
        self.prepared = False
        self.park_writes = True     # decided by prepare(); True until then (nothing to hold before media)
        self.warned = False


def prepare(call) -> None:
    """Once per call, before the first answer/pre_answer: set the channel variables above and
    decide whether FreeSWITCH's park loop will write frames on this call."""
    state = call.idle
    if state.prepared:
        return
    state.prepared = True
    session = call.session
    variables = session.variables
    media_up = session.answered or _channel_data(session, "Answer-State") == "early"
    configured = _nonzero(variables.get("send_silence_when_idle"))
    settings = {"playback_terminators": "none", "record_fill_cng": FILL_CNG, "sleep_eat_digits": "true"}
    if not configured:
        settings["send_silence_when_idle"] = SILENCE
    command = "uuid_setvar_multi %s %s" % (session.uuid, ";".join(f"{k}={v}" for k, v in settings.items()))
    try:
        reply = session.api(command)
    except (ESLError, ESLTimeout) as exc:
        reply = f"-ERR {exc}"
    if not reply.startswith("+OK"):
        # the terminators still matter most: fall back to that one variable
        log.warning("call %s: %s: %s", session.uuid, command.split(" ", 1)[0], reply.strip())
        session.set_var("playback_terminators", "none")
        state.park_writes = configured
        return
    # park read the variable when media came up: only a value present then counts
    state.park_writes = configured or not media_up


def needed(call) -> bool:
    """True when an idle call would write nothing and a live stream needs written frames."""
    if call.idle.park_writes:
        return False
    return any(not s.ended.is_set() and s.needs_written_frames for s in list(call.streams.values()))


def _warn_once(call) -> None:
    if call.idle.warned:
        return
    call.idle.warned = True
    log.warning("call %s: FreeSWITCH answered this call before callfork got it, without "
                "send_silence_when_idle set, so it writes no audio while the call idles and a "
                "stream's audio would not reach the caller; callfork keeps FreeSWITCH's `sleep` app "
                "running while such a stream waits. Set send_silence_when_idle=-1 in the dialplan "
                "before `answer` (freeswitch/README.md).", call.uuid)
    call.timeline("idle_writer", {"reason": "media up before callfork, send_silence_when_idle unset"})


def hold(call, until, seconds: float | None = None) -> bool:
    """Block, keeping FreeSWITCH's `sleep` app writing silence, until `until()` is true (True)
    or `seconds` have passed (True), or the verb is interrupted (False). Raises CallGone."""
    session = call.session
    _warn_once(call)
    deadline = None if seconds is None else time.monotonic() + seconds
    running = None
    try:
        while True:
            if until():
                return True
            if call.interrupted.is_set() or call.barged_in():
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return True
            if running is None or running.done:
                ms = HOLD_SLICE_MS if remaining is None else max(20, int(remaining * 1000) + 20)
                running = session.execute_async("sleep", str(min(ms, HOLD_SLICE_MS)))
            if session.wait_gone(POLL_S if remaining is None else min(POLL_S, remaining)):
                raise CallGone(session.hangup_cause, call.uuid)
    finally:
        if running is not None and not running.done and not session.gone:
            try:
                session.break_media()
                running.wait(2.0)
            except (CallGone, ESLError, ESLTimeout):
                pass


def _nonzero(value) -> bool:
    try:
        return int(str(value).strip()) != 0
    except (TypeError, ValueError):
        return False


def _channel_data(session, name: str):
    data = getattr(session, "channel_data", None)
    return data.get(name) if data is not None else None
