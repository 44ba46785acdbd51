"""Running apps on a simulated channel: the private message queue `sendmsg` fills, running one
message (execute with loops and event-lock, hangup), executing an app
(switch_core_session_execute_application: CHANNEL_EXECUTE, run, CHANNEL_EXECUTE_COMPLETE), the park
loop, and uuid_transfer. A mixin of `switch_sim.channel.Channel`, which calls `_init_execution()`
from its constructor; the apps themselves are in switch_sim.apps.

Approximated:
* Nesting: a message queued while a non-locked message's playback/speak/sleep/record/digit
  collection runs is executed nested inside it (the outer app pauses, then resumes), as
  switch_ivr_parse_all_events does; with `event-lock: true` messages run strictly one after the
  other. A PRIVATE_COMMAND event follows the EXECUTE_COMPLETE of non-locked messages, as in the
  capture.
* CHANNEL_PARK is fired when the controller sends its first command after `connect` (or 200 ms after
  `connect`), so a controller that subscribes right away sees it, as it does with FreeSWITCH.
"""
from __future__ import annotations

import collections
import logging
import time
import uuid as uuid_mod

from .channel_media import silence_divisor
from .events import header_value

log = logging.getLogger('switch_sim.channel')


class Message:
    """A private event queued to the channel by sendmsg (headers lower-cased keys, order kept)."""

    def __init__(self, headers: list[tuple[str, str]], body: str | None = None, raw: str = ''):
        self.headers = headers
        self.body = body
        self.raw = raw

    def get(self, name: str, default=None):
        return header_value(self.headers, name, default)


class Execution:
    """The message queue, app execution, park loop and transfer of a Channel."""

    def _init_execution(self) -> None:
        self.messages: collections.deque = collections.deque()
        self._transfer: list[tuple[str, str]] | None = None
        self._lock_stack: list[bool] = []   # event-lock flag of each message being run (nesting)
        self._current_app = None      # (name, arg, app_uuid) of the running app
        self.last_app = None
        self.last_arg = None

    # ------------------------------------------------------------------ messages (sendmsg)
    def queue_message(self, msg: Message) -> None:
        self.messages.append(msg)

    def run_next_message(self) -> bool:
        """Dequeue and run one private message. True if one ran."""
        if not self.messages or self.hungup:
            return False
        msg = self.messages.popleft()
        command = (msg.get('call-command') or '').lower()
        if command == 'execute':
            app = msg.get('execute-app-name') or ''
            arg = msg.get('execute-app-arg') or ''
            if not arg and msg.body and (msg.get('content-type') or '').lower() == 'text/plain':
                arg = msg.body
            try:
                loops = int(msg.get('loops') or 1)
            except ValueError:
                loops = 1
            lock = (msg.get('event-lock') or '').lower() == 'true' or \
                (msg.get('event-lock-pri') or '').lower() == 'true'
            loop = 0
            self._lock_stack.append(lock)
            try:
                while not self.hungup and (loops < 0 or loop < loops):
                    loop += 1
                    self.set_variable('current_loop', str(loop))
                    self.set_variable('total_loops', str(loops))
                    started = time.monotonic()
                    self.execute(app, arg, app_uuid=msg.get('event-uuid'),
                                 app_uuid_name=msg.get('event-uuid-name'))
                    if loops != 1 and time.monotonic() - started < 0.5:
                        break
            finally:
                self._lock_stack.pop()
            if not lock:
                self.fire_event('PRIVATE_COMMAND', with_variables=False,
                                prefix_headers=[('Command', msg.raw)] + list(msg.headers))
            self.set_variable('current_loop', None)
            self.set_variable('total_loops', None)
        elif command == 'hangup':
            self.hangup(msg.get('hangup-cause') or 'NORMAL_CLEARING')
        elif command in ('unicast', 'nomedia', 'xferext'):
            log.error('[%s] sendmsg call-command %s is not implemented by the simulator', self.uuid, command)
        else:
            log.error('[%s] sendmsg: unknown call-command %r', self.uuid, command)
        return True

    def service_messages(self) -> None:
        """switch_ivr_parse_all_events, called by media apps on every frame: queued messages run
        NESTED inside the running app, unless the message being run holds the event lock
        (CF_EVENT_LOCK), in which case they wait their turn."""
        while self.messages and not self.hungup and self._transfer is None \
                and not (self._lock_stack and self._lock_stack[-1]):
            self.run_next_message()

    # ------------------------------------------------------------------ apps
    def execute(self, app: str, arg: str = '', app_uuid: str | None = None, app_uuid_name: str | None = None):
        """switch_core_session_execute_application: EXECUTE, run, EXECUTE_COMPLETE.

        Unknown app: hang up with DESTINATION_OUT_OF_ORDER, no events. After hangup: ignored."""
        from .apps import APPS, AppError
        if self.hungup:
            log.info('[%s] app %s after hangup ignored', self.uuid, app)
            return None
        func = APPS.get(app)
        if func is None:
            log.error('[%s] Invalid Application %s', self.uuid, app)
            self.hangup('DESTINATION_OUT_OF_ORDER')
            return None
        data = self.expand(arg or '')
        app_uuid = app_uuid or str(uuid_mod.uuid4())
        self.set_variable('current_application_data', data)
        self.set_variable('current_application', app)
        self.set_variable('current_application_response', None)
        head = [('Application', app)]
        if data:
            head.append(('Application-Data', data))
        tail = [('Application-UUID', app_uuid)]
        if app_uuid_name:
            tail.append(('Application-UUID-Name', app_uuid_name))
        self.fire_event('CHANNEL_EXECUTE', head + tail)
        previous = self._current_app
        self._current_app = (app, data, app_uuid)
        self.last_app, self.last_arg = app, data     # the app log's last entry = the last app started
        # what writes frames is the running app: an outer one (park, a playback running this one
        # nested) writes nothing until this one returns; CF_BREAK is cleared as each app starts
        writer = (self.write_source, self.silence_writer)
        self.write_source = self.silence_writer = None
        self._break = False
        try:
            func(self, data)
        except AppError as exc:
            log.error('[%s] %s(%s): %s', self.uuid, app, data, exc)
        except Exception:
            log.exception('[%s] app %s crashed', self.uuid, app)
        finally:
            self._current_app = previous
            if not self.hungup:
                self.write_source, self.silence_writer = writer
        response = self.variables.get('current_application_response') or '_none_'
        self.fire_event('CHANNEL_EXECUTE_COMPLETE', head + [('Application-Response', response)] + tail)
        return response

    def park(self, until=None) -> None:
        """switch_ivr_park: fire CHANNEL_PARK, then run queued messages on each tick until hangup
        (or `until()` turns true); digits pressed meanwhile are dequeued (DTMF events)."""
        self.parked = True
        self.fire_event('CHANNEL_PARK')
        media_checked = False
        try:
            while not self.hungup and self._transfer is None:
                if until is not None and until():
                    break
                if not media_checked and (self.answered or self.early_media):
                    # switch_ivr_park: the variable is read once, the first time media is ready
                    media_checked = True
                    self.silence_writer = silence_divisor(self.get_variable('send_silence_when_idle'))
                if not self.wait_frame():
                    break
                self._break = False
                if self.dtmf_queue:
                    self.dequeue_dtmf()
                while self.messages and not self.hungup and self._transfer is None:
                    self.run_next_message()
                    if until is not None and until():
                        break
        finally:
            self.parked = False
            self.silence_writer = None
            self.fire_event('CHANNEL_UNPARK')

    def transfer(self, apps: list[tuple[str, str]]) -> None:
        """uuid_transfer: stop what runs (and the queued messages), then run `apps` as the new dialplan."""
        if self.hungup:
            return
        self._transfer = list(apps)
        self.messages.clear()
        self.break_playback()

    def transfer_pending(self) -> bool:
        return self._transfer is not None

