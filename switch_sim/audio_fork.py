"""mod_audio_fork emulation: the `uuid_audio_fork` API, one fork session per media bug, and what the
module does with the server's messages. `register(sim)` installs the API on a Simulator.

Split by job: fork_command (the API's arguments and reply texts), fork_session (one fork: its media
bug, its WebSocket's events, the server's messages), fork_playout (jambonz's bidirectional audio and
marks), fork_json (cJSON as the module parses and prints), fork_ws (the WebSocket client,
`switch_sim.fork_ws.AudioPipe`). This module owns the API handler and the per-simulator registry of
forks: bug-name uniqueness, the pre-answer check, start / stop / pause / resume /
graceful-shutdown / send_text / stop_play, cleanup (temp files removed, the pipe closed) and module
unload. From the drachtio 88e1465 and jambonz 30f2189 sources and the captures in
tests/fixtures/fs-captures.

Approximated (not in the captures):
* `start` with an unparsable URL (bad scheme) is answered `+OK Success` and then fails with
  connect_failed "Unable to connect" (the module would use an uninitialised host buffer); `start`
  with a mix type but no rate (a NULL dereference in the module) gets no reply; a rate <= 0 or above
  384000 fails (-ERR Operation Failed), like the speex resampler init failure for <= 0.
* The playAudio temp-file counter is per registered simulator (the module's is per process).
"""
from __future__ import annotations

import logging
import os
import weakref

import gevent

from . import fork_ws
from .fork_command import FAILED, MY_BUG_NAME, NO_REPLY, OK, USAGE, Command, parse_command, parse_ws_uri
from .fork_json import cjson_parse, cjson_print, message_type
from .fork_playout import Playout
from .fork_session import ForkSession

__all__ = ['AudioForkModule', 'register', 'Command', 'parse_command', 'parse_ws_uri', 'USAGE',
           'cjson_parse', 'cjson_print', 'message_type', 'Playout', 'ForkSession']

log = logging.getLogger('switch_sim.audio_fork')

MAX_RATE = 384000


class AudioForkModule:
    """The loaded module of one Simulator: `api(sim, args)` is the uuid_audio_fork handler."""

    def __init__(self, sim):
        self.sim = sim
        self.sessions: dict[tuple[str, str], ForkSession] = {}
        self.pipes: weakref.WeakSet = weakref.WeakSet()   # every pipe, including orphaned ones
        self._play_count = 0

    def shutdown(self) -> None:
        """Module unload: drop every WebSocket still open, including pipes orphaned by a `stop` while
        connecting or after graceful-shutdown (FreeSWITCH keeps those open until it exits)."""
        for pipe in list(self.pipes):
            pipe.abort()

    @property
    def flavor(self) -> str:
        return 'drachtio' if getattr(self.sim, 'flavor', 'jambonz') == 'drachtio' else 'jambonz'

    def next_play_count(self) -> int:
        n = self._play_count
        self._play_count += 1
        return n

    def api(self, sim, args: str) -> str:
        try:
            return self._api(args or '')
        except Exception:  # noqa: BLE001 - bad input never crashes the simulator
            log.exception('uuid_audio_fork %r failed', args)
            return FAILED

    def _api(self, args: str) -> str:
        flavor = self.flavor
        cmd = parse_command(args, flavor)
        if cmd.reply is not None:
            return cmd.reply
        channel = self.sim.get_channel(cmd.uuid)
        if channel is None or getattr(channel, 'hungup', False):
            return FAILED
        if cmd.noreply:
            return NO_REPLY
        session = self.sessions.get((channel.uuid, cmd.bugname))
        action = cmd.action
        if action == 'stop':
            if session is None:
                return FAILED
            self.cleanup(session, text=cmd.text, channel_closing=False)
            return OK
        if action == 'stop_play' and flavor == 'jambonz':
            session = self.sessions.get((channel.uuid, MY_BUG_NAME))
            if session is None:
                return FAILED
            session.playout.stop_play()
            return OK
        if action in ('pause', 'resume'):
            if session is None:
                return FAILED
            session.paused = action == 'pause'
            return OK
        if action == 'graceful-shutdown':
            if session is None:
                return FAILED
            session.graceful = True
            if session.pipe is not None:
                session.pipe.do_graceful_shutdown()
            return OK
        if action == 'send_text':
            if session is None:
                return FAILED
            if session.pipe is not None and cmd.text is not None:
                session.pipe.buffer_for_sending(cmd.text)
            return OK
        if action == 'start':
            return self._start(channel, cmd)
        return FAILED

    def _start(self, channel, cmd: Command) -> str:
        if (channel.uuid, cmd.bugname) in self.sessions:
            log.error('mod_audio_fork: bug %s already attached!', cmd.bugname)
            return FAILED
        target = parse_ws_uri(cmd.url, self.flavor)
        if target is None:
            log.error('invalid websocket uri: %s', cmd.url)
        elif cmd.rate % 8000:
            log.error('invalid sample rate: %s', cmd.rate)
        if not getattr(channel, 'answered', False):
            try:
                ok = channel.pre_answer()
            except Exception:  # noqa: BLE001
                ok = False
            if ok is False or getattr(channel, 'hungup', False):
                log.error('mod_audio_fork: channel must have reached pre-answer status before calling start!')
                return FAILED
        if cmd.rate <= 0 or cmd.rate > MAX_RATE:
            log.error('Error initializing mod_audio_fork session.')
            return FAILED
        session = ForkSession(self, channel, cmd, target)
        try:
            channel.add_media_bug(session)
        except ValueError:  # another module's bug has that name
            return FAILED
        self.sessions[(channel.uuid, cmd.bugname)] = session
        self.pipes.add(session.pipe)
        if session.bad_target:
            # the module goes on with an uninitialised host buffer: model it as an unreachable host
            session.pipe.state = fork_ws.FAILED
            gevent.spawn(session._on_pipe_event, fork_ws.CONNECT_FAIL, 'Unable to connect')
        else:
            session.pipe.connect()
        return OK

    def cleanup(self, session: ForkSession, text: str | None, channel_closing: bool) -> None:
        """fork_session_cleanup."""
        if session.closed:
            return
        session.closed = True
        key = (session.channel.uuid, session.name)
        if self.sessions.get(key) is session:
            del self.sessions[key]
        channel = session.channel
        if not channel_closing:
            try:
                channel.remove_media_bug(session)
            except Exception:  # noqa: BLE001
                log.exception('remove_media_bug failed')
        for path in session.files:
            try:
                os.remove(path)
            except OSError:
                pass
        session.files = []
        pipe = session.pipe
        if pipe is not None:
            if text:
                pipe.buffer_for_sending(text)
            pipe.close()


def register(sim) -> AudioForkModule:
    """Load the emulated mod_audio_fork into `sim`: registers the `uuid_audio_fork` API."""
    module = AudioForkModule(sim)
    sim.register_api('uuid_audio_fork', module.api)
    return module
