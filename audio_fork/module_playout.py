"""The app's audio played by mod_audio_fork itself (the jambonz build, `... true true 8000`): the
pacer greenlet sends one 8 kHz L16 frame to the module every 20 ms, and a clearAudio/clear empties
what the module holds (`killAudio`). Chosen by playback.py for a bidirectional jambonz stream.

The pacer sends frames at once while the caller hears nothing of ours (mod_audio_fork plays nothing
until its prebuffer holds 160 ms, then 80 ms: so an utterance starts as soon as the module can play
it), then one per 20 ms on absolute deadlines. `paced_until` is when what was sent would have
finished at real-time pace: when the queue runs dry with audio still short of a frame here or in the
module's prebuffer, the pacer waits until TAIL_GRACE_FRAMES past it (the app may just be sending in
real time), then sends the partial frame and silence until the module has flushed it
(ModuleBuffer), so an utterance's end is heard now and not with the next one. Marks are acked by
the playback (`ack_marks`) once the caller has heard their audio.
"""
from __future__ import annotations

import logging
import time

import gevent

from .module_buffer import PLAYOUT_FRAME

log = logging.getLogger("callfork.audio_fork.session")

__all__ = ["ModulePlayout"]

TAIL_GRACE_FRAMES = 2        # an empty queue this long ends an utterance: flush its tail
PERIOD = 0.020


class ModulePlayout:
    """`playback` is the stream's Playback (its playout queue, `heard`, `audio_ready`, `stopping`,
    `ack_marks`, relay counters); `module` the module's WebSocket."""

    def __init__(self, playback, module):
        self.playback = playback
        self.module = module

    def run(self) -> None:
        playback = self.playback
        grace = TAIL_GRACE_FRAMES * PERIOD
        deadline = None
        paced_until = None
        playout = playback.playout
        heard = playback.heard
        ready = playback.audio_ready
        silence = b"\x00" * PLAYOUT_FRAME
        while not playback.stopping:
            padding = None
            silent = False
            now = time.monotonic()
            if not playout.has_frame():
                if not (playout.queued_bytes or heard.pending):
                    deadline = paced_until = None
                    ready.clear()
                    ready.wait(0.1)
                    continue
                late = (paced_until or now) + grace
                if now < late:
                    deadline = None
                    ready.clear()
                    ready.wait(min(PERIOD, late - now))
                    continue
                padding = playout.pull(partial=True)
                if padding is None:
                    padding, silent = silence, True
            if deadline is None or not heard.playing(now):
                deadline = now  # the caller hears nothing of ours: fill the module's prebuffer at once
            elif deadline > now:
                gevent.sleep(deadline - now)
            frame = padding if padding is not None else playout.pull()
            if frame is None:
                continue
            try:
                self.module.send_bytes(frame)
            except Exception as exc:  # noqa: BLE001
                log.warning("%s playout to module failed: %r", playback.label, exc)
                return
            playback.relay.frames_out += 1
            now = time.monotonic()
            heard.push(len(frame) // 2, now, padding=silent)
            if not silent:
                paced_until = max(paced_until or now, now) + PERIOD
            playback.ack_marks()
            deadline += PERIOD
            if now - deadline > 0.2:  # fell far behind (hub stalled): resync, no burst
                deadline = now

    def clear(self) -> None:
        """Barge-in: empty what mod_audio_fork holds of ours, not only our queue. Its killAudio
        empties the playout buffer at the next written frame, but not its prebuffer, whose rest
        would start the next utterance: so the prebuffer is first filled to its threshold with
        silence (which moves it into the playout), then killed. killAudio also sets CF_BREAK on the
        channel, which ends the app running there: only when the call says nothing but our own
        writer runs (`may_kill_audio`). Otherwise what the module holds plays out (up to ~160 ms)."""
        playback = self.playback
        if playback.may_kill_audio is None:
            return
        try:
            allowed = playback.may_kill_audio()
        except Exception:  # noqa: BLE001 - the call may be going away: no kill then
            allowed = False
        if not allowed:
            return
        heard = playback.heard
        try:
            if heard.pending:
                self.module.send_bytes(b"\x00" * ((heard.threshold - heard.pending) * 2))
            self.module.send_text('{"type":"killAudio"}')
        except Exception as exc:  # noqa: BLE001 - the module went away: nothing left to clear
            log.info("%s killAudio: %r", playback.label, exc)
            return
        heard.killed(time.monotonic())
