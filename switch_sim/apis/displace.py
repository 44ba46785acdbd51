"""`uuid_displace <uuid> [start|stop] <path> [<limit>] [<flags>]` on the simulated switch, as
FreeSWITCH 1.10.12 runs it (mod_commands.c session_displace_function, switch_ivr_async.c
switch_ivr_displace_session / write_displace_callback), checked against the running FreeSWITCH
(tests/fixtures/fs-captures/uuid-displace.json, replayed by tests/test_sim_displace.py):

* arguments split by switch_separate_string into 5 slots; fewer than 3, or an action other than
  start/stop (any case): `-USAGE: <uuid> [start|stop] <path> [<limit>] [mux]`; no such channel:
  `-ERR Cannot locate session!`;
* start pre-answers the channel, opens the file (a path FreeSWITCH's file open takes: files,
  file_string://, tone_stream://, silence_stream://; not tts:// nor say:, which only the playback
  app understands) and attaches a `displace` bug keyed by the path: `+OK Success`; the same path
  twice, or a file that cannot be opened: `-ERR Cannot displace session!`;
* flags are letters looked for anywhere in the 5th argument (so `mux` means `m`): `m` mixes the
  file into each frame the channel writes, otherwise the frame is replaced (the tail of a short
  last read is zeros); `l` loops the file; the limit (seconds, atoi) ends the bug once the epoch
  second reaches the start's plus the limit (0 to 1 s early, as FreeSWITCH's stop_time). A file that ends (not looping) removes the bug;
* the bug only acts on frames the channel writes: while the channel writes nothing (park without
  send_silence_when_idle) the file does not advance and nothing is heard;
* stop removes the bug of that path: `+OK Success`, or `-ERR Cannot stop displace session!` when
  there is none (it ended, or never started).

* `r` displaces the read side instead (read_displace_callback): what the channel reads (what a
  bridged B-leg hears) is the file, or the file mixed in with `m` (captured: bridge.json,
  read_displace_reaches_the_callee); what it writes becomes 0xFFFF samples unless `m` (from the
  source, not captured).

Approximated: FreeSWITCH also replaces what the channel *reads* with 0xFFFF samples while a non-`m`,
non-`r` displace runs (the caller is muted to the other side); the simulator leaves the read side
of a write displace alone.
"""
from __future__ import annotations

import logging
import time

import gevent
import numpy as np

from ..argsplit import atoi, separate_string
from ..media import MediaError, open_source

log = logging.getLogger('switch_sim.displace')

USAGE = '-USAGE: <uuid> [start|stop] <path> [<limit>] [mux]\n'


class DisplaceBug:
    """The `displace` media bug: SMBF_WRITE_REPLACE over the frames the channel writes."""

    function = 'displace'
    write_replace = True

    def __init__(self, ch, path: str, opener, limit_s: int, mux: bool, loop: bool, read: bool = False):
        self.ch = ch
        self.read_replace = read        # `r`: the file replaces what the channel reads
        self.opener = opener            # () -> a fresh Source of the file (for `l`)
        self.name = 'displace:' + path
        self.target = path
        self.path = path
        self.src = opener()
        self.mux = mux
        self.loop = loop
        # switch_core_media_bug_add's stop_time: whole epoch seconds (now + limit), checked against
        # the epoch second, so a limit of n ends the bug n-1 to n seconds after it started
        self.deadline = int(time.time()) + limit_s if limit_s > 0 else None
        self._ending = False

    def replace_write(self, frame):
        if self.read_replace:           # read_displace_callback's WRITE_REPLACE: 0xFFFF unless mux
            return frame if self.mux or self._ending else np.full(len(frame), -1, dtype=np.int16)
        return self._next(frame)

    def replace_read(self, frame):
        """SMBF_READ_REPLACE (`r`): the frame the channel reads (None: CNG)."""
        samples = np.zeros(160, dtype=np.int16) if frame is None else frame
        out = self._next(samples)
        return frame if out is samples and frame is None else out

    def _next(self, frame):
        if self._ending:
            return frame
        if self.deadline is not None and int(time.time()) >= self.deadline:
            return self._end(frame)
        if self.src.done:
            if not self.loop:
                return self._end(frame)
            self.src = self.opener()
        data = self.src.read(len(frame))
        if self.mux:
            return np.clip(frame.astype(np.int32) + data.astype(np.int32), -32768, 32767).astype(np.int16)
        return data

    def _end(self, frame):
        self._ending = True
        gevent.spawn(self.ch.remove_media_bug, self)
        return frame

    def on_close(self):
        pass


def _displace_bug(ch, path: str):
    return ch.media_bugs.get('displace:' + path)


def api_uuid_displace(sim, args):
    parts = separate_string(args, max_parts=5) if args and args.strip() else []
    if len(parts) < 3 or not parts[0] or not parts[1] or not parts[2]:
        return USAGE
    uuid, action, path = parts[0], parts[1].lower(), parts[2]
    ch = sim.get_channel(uuid)
    if ch is None:
        return '-ERR Cannot locate session!\n'
    if action == 'start':
        limit = atoi(parts[3]) if len(parts) > 3 else 0
        flags = parts[4] if len(parts) > 4 else ''
        return '+OK Success\n' if _start(ch, path, limit, flags) else '-ERR Cannot displace session!\n'
    if action == 'stop':
        bug = _displace_bug(ch, path)
        if bug is None:
            return '-ERR Cannot stop displace session!\n'
        ch.remove_media_bug(bug)
        return '+OK Success\n'
    return USAGE


def _start(ch, path: str, limit: int, flags: str) -> bool:
    ch.pre_answer()
    if ch.hungup or _displace_bug(ch, path) is not None:
        return False
    if path.startswith(('tts://', 'say:')):
        return False   # only the playback app knows these; FreeSWITCH's file open does not
    def opener():
        return open_source(path, ch.sim.media, ch.variables)
    try:
        bug = DisplaceBug(ch, path, opener, limit or 0, 'm' in flags, 'l' in flags, read='r' in flags)
    except MediaError as exc:
        log.error('[%s] uuid_displace: cannot open %s: %s', ch.uuid, path, exc)
        return False
    ch.add_media_bug(bug)
    return True
