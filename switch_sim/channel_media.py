"""The media side of a simulated channel: the 20 ms media clock, the read and write paths through
the media bugs, the write injectors, CF_BREAK and the caller's DTMF queue. A mixin of
`switch_sim.channel.Channel`, which calls `_init_media()` from its constructor.

Media, per 20 ms tick (absolute-deadline pacing, 8 kHz L16 mono, 160-sample frames), as
FreeSWITCH's read and write paths do it (switch_core_io.c, switch_core_media.c; each step is pinned
by a replay of a real FreeSWITCH capture):
* read: once media is up, the caller's frame, or CNG when the caller sent none (a phone that
  suppresses silence; the caller's `vad`); read taps (the blocking `record` and `wait_for_silence`
  apps) see it with its CNG flag; every bug with a read stream gets it (CNG as 0xFFFF samples),
  then every READ_PING bug is called;
* write: a frame only when the running app writes one: a playback source (playback, speak, tones),
  or the silence of `silence_writer`, which the running app sets: park reads
  `send_silence_when_idle` once, when media first comes up; sleep and digit collection read it on
  every call; `record` writes low noise (record_waste_resources, on by default). Any other app, and
  park without that variable, writes nothing: then no bug sees a write, nothing is mixed in by a
  SMBF_WRITE_REPLACE bug (mod_audio_fork's bidirectional audio stays in its buffer) and the caller
  hears silence. A written frame goes through the bugs in the order they were attached: a
  WRITE_STREAM bug copies it as it is at its turn, a WRITE_REPLACE bug changes it for the next ones;
* then `write_injectors` (digits `uuid_send_dtmf` sends, which go out of band even when nothing
  is written) are added to what the caller hears.

DTMF: a digit the caller sends waits in the queue; the DTMF event fires when something dequeues it.
Approximated: caller DTMF is reported with `DTMF-Source: RTP` (a SIP caller's RFC 2833 digits; the
loopback capture shows UNKNOWN) and `DTMF-Duration: 2000`.
"""
from __future__ import annotations

import collections
import logging
import time

import gevent
import numpy as np
from gevent.event import Event as GEvent

from .argsplit import atoi
from .media import FRAME_SAMPLES
from .media_bug import CNG_FILL, sln_silence

log = logging.getLogger('switch_sim.channel')

FRAME_BYTES = FRAME_SAMPLES * 2
FRAME_SECONDS = 0.02
_ZERO_FRAME = np.zeros(FRAME_SAMPLES, dtype=np.int16)


def silence_divisor(value) -> int | None:
    """`send_silence_when_idle` as the apps read it: None (write nothing) for 0 or no number;
    SWITCH_IVR_VERIFY_SILENCE_DIVISOR makes other values below 1 (but -1) 400."""
    n = atoi(value)
    if n == 0:
        return None
    if n <= 0 and n != -1:
        return 400
    return n


class MediaPath:
    """The media clock, bugs, injectors, CF_BREAK and DTMF queue of a Channel."""

    def _init_media(self) -> None:
        self.media_bugs: dict[str, object] = {}
        self.write_injectors: list = []
        self.write_source = None
        self.silence_writer = None    # the running app writes this silence when it has nothing else (divisor)
        self.read_taps: list = []     # callables(frame | None) of apps that read frames themselves
        self._break = False
        self._tick_event = GEvent()
        self._media_greenlet = None
        self._frames = 0
        self._created_mono = time.monotonic()
        self.dtmf_queue: collections.deque = collections.deque()
        self.digits_dialed = ''

    # ------------------------------------------------------------------ media bugs / injectors
    def add_media_bug(self, bug) -> None:
        """Attach a media bug (`.name`, `on_media(read, write)`, `on_close()`); fires MEDIA_BUG_START."""
        if bug.name in self.media_bugs:
            raise ValueError('media bug %r already attached' % bug.name)
        self.media_bugs[bug.name] = bug
        init = getattr(bug, 'on_init', None)
        if init:
            init()
        self.fire_event('MEDIA_BUG_START', pre_headers=[
            ('Media-Bug-Function', getattr(bug, 'function', bug.name)),
            ('Media-Bug-Target', getattr(bug, 'target', ''))])

    def remove_media_bug(self, bug) -> None:
        """Detach a bug (its on_close is called once, then MEDIA_BUG_STOP fires)."""
        if self.media_bugs.get(bug.name) is not bug:
            return
        del self.media_bugs[bug.name]
        self._close_bug(bug)

    def _close_bug(self, bug) -> None:
        try:
            bug.on_close()
        except Exception:
            log.exception('[%s] media bug %s on_close failed', self.uuid, bug.name)
        self.fire_event('MEDIA_BUG_STOP', pre_headers=[
            ('Media-Bug-Function', getattr(bug, 'function', bug.name)),
            ('Media-Bug-Target', getattr(bug, 'target', ''))])

    def _close_media(self) -> None:
        """The channel hangs up: every bug is closed (in attach order), the injectors dropped."""
        for bug in list(self.media_bugs.values()):
            self.media_bugs.pop(bug.name, None)
            self._close_bug(bug)
        self.write_injectors = []

    def add_write_injector(self, inj) -> None:
        if inj not in self.write_injectors:
            self.write_injectors.append(inj)

    def remove_write_injector(self, inj) -> None:
        if inj in self.write_injectors:
            self.write_injectors.remove(inj)

    def break_playback(self, all_files: bool = False) -> None:
        """CF_BREAK: the running playback/speak/record/sleep stops (Playback-Status: break)."""
        self._break = True
        if all_files:
            self.messages.clear()

    def take_break(self) -> bool:
        if self._break:
            self._break = False
            return True
        return False

    # ------------------------------------------------------------------ DTMF
    def queue_dtmf(self, digit: str, duration: int = 2000, source: str = 'RTP') -> None:
        """A digit arrives from the caller (it is only reported when something dequeues it)."""
        if self.hungup:
            return
        self.dtmf_queue.append((digit, duration, source))

    def has_dtmf(self) -> bool:
        return bool(self.dtmf_queue)

    def dequeue_dtmf(self):
        """Take one digit, firing the DTMF event (no variables). Returns the digit or None."""
        if not self.dtmf_queue:
            return None
        digit, duration, source = self.dtmf_queue.popleft()
        self.digits_dialed += digit
        self.fire_event('DTMF', [('DTMF-Digit', digit), ('DTMF-Duration', str(duration)),
                                 ('DTMF-Source', source)], with_variables=False)
        return digit

    # ------------------------------------------------------------------ media clock
    def wait_frame(self, timeout: float = 1.0) -> bool:
        """Block until the next 20 ms tick. False once the channel is hung up."""
        if self.hungup:
            return False
        self._tick_event.wait(timeout)
        return not self.hungup

    def wait_frames(self, count: int) -> bool:
        """Block for `count` ticks (False as soon as the channel is hung up)."""
        for _ in range(count):
            if not self.wait_frame():
                return False
        return True

    def _media_loop(self) -> None:
        deadline = time.monotonic()
        try:
            while not self.hungup:
                deadline += FRAME_SECONDS
                delay = deadline - time.monotonic()
                if delay > 0:
                    gevent.sleep(delay)
                elif delay < -1.0:       # far behind (suspended?): resync instead of bursting
                    deadline = time.monotonic()
                    gevent.sleep(0)
                else:
                    gevent.sleep(0)
                if self.hungup:
                    break
                try:
                    self._tick()
                except Exception:
                    log.exception('[%s] media tick failed', self.uuid)
                self._wake_frame_waiters()
        finally:
            self._wake_frame_waiters()

    def _wake_frame_waiters(self) -> None:
        """End the current tick: whoever waits in wait_frame() runs."""
        ev = self._tick_event
        self._tick_event = GEvent()
        ev.set()

    def _tick(self) -> None:
        self._frames += 1
        caller = self.caller
        if self.answered or self.early_media:
            read = caller.read_frame() if caller is not None else _ZERO_FRAME
            self._read(read)
        write = self._written_frame()
        if write is not None and self.media_bugs:
            write = self._write_through_bugs(write)
        heard = write
        if self.write_injectors:
            acc = (write if write is not None else _ZERO_FRAME).astype(np.int32)
            for inj in list(self.write_injectors):
                try:
                    data = inj.pull(FRAME_BYTES)
                except Exception:
                    log.exception('[%s] write injector failed', self.uuid)
                    data = None
                if data:
                    extra = np.frombuffer(data[:FRAME_BYTES], dtype='<i2')
                    acc[:len(extra)] += extra
            heard = np.clip(acc, -32768, 32767).astype(np.int16)
        if caller is not None:
            caller.tick(self, heard if heard is not None else _ZERO_FRAME, time.monotonic() - self._created_mono)

    def _read(self, read) -> None:
        """One read frame (None = CNG): SMBF_READ_REPLACE bugs change it (uuid_displace's `r` flag;
        approximated: before every other bug, in attach order), then it goes to the read taps (the
        blocking record apps, a bridge), the read-stream bugs, then READ_PING bugs."""
        for bug in list(self.media_bugs.values()):
            if getattr(bug, 'read_replace', False):
                try:
                    read = bug.replace_read(read)
                except Exception:
                    log.exception('[%s] media bug %s failed', self.uuid, getattr(bug, 'name', bug))
        for tap in list(self.read_taps):
            try:
                tap(read)
            except Exception:
                log.exception('[%s] read tap failed', self.uuid)
        if not self.media_bugs:
            return
        data = CNG_FILL if read is None else read.tobytes()
        bugs = list(self.media_bugs.values())
        for bug in bugs:
            if getattr(bug, 'reads_stream', False):
                try:
                    bug.on_read(data)
                except Exception:
                    log.exception('[%s] media bug %s failed', self.uuid, getattr(bug, 'name', bug))
        for bug in bugs:
            if getattr(bug, 'read_ping', False):
                try:
                    bug.on_read_ping()
                except Exception:
                    log.exception('[%s] media bug %s failed', self.uuid, getattr(bug, 'name', bug))

    def _written_frame(self):
        """The frame the running app writes this tick, or None when it writes nothing."""
        src = self.write_source
        if src is not None:
            return src.read(FRAME_SAMPLES)
        if self.silence_writer:
            return sln_silence(FRAME_SAMPLES, self.silence_writer, self._frames * FRAME_SAMPLES)
        return None

    def _write_through_bugs(self, frame):
        """The bugs in attach order: a WRITE_STREAM bug copies the frame as it is at its turn, a
        WRITE_REPLACE bug changes it for the bugs after it and for the caller."""
        for bug in list(self.media_bugs.values()):
            try:
                if getattr(bug, 'writes_stream', False):
                    bug.on_write(frame.tobytes())
                if getattr(bug, 'write_replace', False):
                    frame = bug.replace_write(frame)
            except Exception:
                log.exception('[%s] media bug %s failed', self.uuid, getattr(bug, 'name', bug))
        return frame
