"""One call = one outbound ESL socket: `CallSession` (channel data, execute with Application-UUID
matching, api over the socket, event queues and callbacks, hangup/linger handling). What waits
on its events (`Execution`, `EventQueue`) is in waiters.py, the `${...}` escaping of app args in
app_args.py.

Rules (docs/internals.md esl_app; mod_event_socket:
https://developer.signalwire.com/freeswitch/FreeSWITCH-Explained/Modules/mod_event_socket_1048924):
- every `sendmsg` is `execute` with `event-lock: true`, a fresh `Event-UUID` and the arg in the
  body (`content-type: text/plain`, byte-counted); completion = the CHANNEL_EXECUTE_COMPLETE
  whose `Application-UUID` is that Event-UUID, never the app name;
- `${...}` in app args is never expanded by accident: at session start the channel variable
  `app_disable_expand_variables=true` is set (FreeSWITCH then passes app args verbatim); if that
  fails, `execute` escapes args with `escape_app_arg` instead;
- CHANNEL_HANGUP, a disconnect notice or EOF makes the call gone: every waiter (executions, api
  replies, event queues with nothing left to deliver) is released with `CallGone`. The socket
  lingers, so CHANNEL_HANGUP_COMPLETE, RECORD_STOP, ... still reach queues subscribed earlier.
"""
import logging
import re
import time
import uuid as uuid_mod

import gevent
import gevent.event

from fsargs import quote_api_arg

from .app_args import escape_app_arg
from .errors import CallGone, ESLDisconnected, ESLError
from .protocol import ESLConnection, build_command
from .waiters import EventQueue, Execution, wait_s

log = logging.getLogger(__name__)

OUTBOUND_EVENTS = (
    'PLAYBACK_START', 'PLAYBACK_STOP', 'RECORD_START', 'RECORD_STOP', 'DTMF', 'BACKGROUND_JOB',
    'CHANNEL_HANGUP_COMPLETE',
    'CUSTOM',
    'mod_audio_fork::connect', 'mod_audio_fork::connect_failed', 'mod_audio_fork::disconnect',
    'mod_audio_fork::error', 'mod_audio_fork::buffer_overrun', 'mod_audio_fork::play_audio',
    'mod_audio_fork::kill_audio', 'mod_audio_fork::json', 'mod_audio_fork::transcription',
    'mod_audio_fork::transfer',
)
_APP_NAME = re.compile(r'^[A-Za-z0-9_:.\-]+$')
_VAR_NAME = re.compile(r'^[A-Za-z0-9_.:\-]+$')
_CAUSE = re.compile(r'^[A-Z0-9_]+$')


class CallSession:
    """The outbound ESL socket of one call. Built by OutboundESLServer; `setup()` runs the
    connect/linger/myevents/event/uuid_setvar handshake; the app then calls the methods below from
    its one greenlet (other greenlets may call them too: sends are serialized)."""

    def __init__(self, sock, peer=None, command_timeout=10.0):
        self.peer = peer
        self.command_timeout = command_timeout
        self.channel_data = None
        self.uuid = None
        self.destination_number = None
        self.caller_id_number = None
        self.caller_id_name = None
        self.direction = None
        self.variables = {}
        self.answered = False
        self.gone = False
        self.hangup_cause = None
        self.expansion_disabled = False
        self.socket_closed = False
        self.hangup_complete_delivered = False
        self._hangup_complete = None
        self._hangup_complete_seen = gevent.event.Event()
        self._gone_event = gevent.event.Event()
        self._executions = {}
        self._queues = []
        self._callbacks = {}
        self._closing = False
        self._sock = sock
        self._conn = ESLConnection(label='call %s' % (peer,), on_close=self._on_socket_closed)
        self._conn.register_handle('*', self._on_event)

    # -- setup -------------------------------------------------------------------------------
    def setup(self, connect_timeout=5.0):
        """`connect` (channel data), then `linger`, `myevents`, `event json ...` and `api uuid_setvar
        <uuid> app_disable_expand_variables true` written back to back (FreeSWITCH answers in
        order; each reply is checked in turn, as if sent one by one). Raises CallGone (caller left,
        or the socket dropped mid-setup), ESLTimeout, ESLError (a `-ERR` to linger/myevents/event)."""
        self._conn.attach(self._sock)
        try:
            reply = self._conn.send('connect', timeout=connect_timeout)
        except ESLDisconnected:
            raise CallGone(None, None, 'caller hung up before connect completed') from None
        self._load_channel_data(reply)
        self._conn.label = self.uuid or self._conn.label
        setvar = 'uuid_setvar %s app_disable_expand_variables true' % self.uuid
        try:
            pending = self._conn.send_pipelined(
                ['linger', 'myevents', 'event json ' + ' '.join(OUTBOUND_EVENTS), 'api ' + setvar],
                timeout=self.command_timeout)
            for slot in pending[:3]:
                answer = slot.get(self.command_timeout)
                text = answer.reply_text
                if answer.content_type == 'command/reply' and text is not None and text.startswith('-ERR'):
                    raise ESLError('%s: %s' % (slot.what, text), reply=text)
            self._raise_if_gone()
            reply = pending[3].get(self.command_timeout)
        except ESLDisconnected:
            raise CallGone(self.hangup_cause, self.uuid) from None
        except ESLError as exc:
            raise ESLError('%s (the dialplan must use `socket <host:port> async full`)' % exc, reply=exc.reply) from None
        try:
            body = self._api_body(setvar, reply)
        except ESLError as exc:
            body = str(exc)
        self.expansion_disabled = body.startswith('+OK')
        if not self.expansion_disabled:
            log.warning('[%s] could not set app_disable_expand_variables (%s); app args will be escaped',
                        self.uuid, body.strip())
        return self

    def _load_channel_data(self, reply):
        headers = reply.headers
        if reply.reply_text and reply.reply_text.startswith('-ERR'):
            raise ESLError('connect refused: %s' % reply.reply_text, reply=reply.reply_text)
        self.channel_data = reply
        self.uuid = headers.get('Unique-ID') or headers.get('Channel-Unique-ID') or headers.get('variable_uuid')
        if not self.uuid:
            raise ESLError('connect reply carries no channel uuid', reply=reply.reply_text)
        self.destination_number = headers.get('Caller-Destination-Number') or headers.get('Channel-Destination-Number')
        self.caller_id_number = headers.get('Caller-Caller-ID-Number') or headers.get('Channel-Caller-ID-Number')
        self.caller_id_name = headers.get('Caller-Caller-ID-Name') or headers.get('Channel-Caller-ID-Name')
        self.direction = headers.get('Call-Direction') or headers.get('variable_direction')
        self.variables = {k[len('variable_'):]: v for k, v in headers.items() if k.startswith('variable_')}
        self.answered = headers.get('Answer-State') == 'answered'

    # -- state -------------------------------------------------------------------------------
    @property
    def events_finished(self):
        """No more events can arrive for queues: socket closed or HANGUP_COMPLETE delivered."""
        return self.socket_closed or self.hangup_complete_delivered

    @property
    def lingering(self):
        return self._conn.lingering

    def _refuse_in_dispatch(self, what):
        """Blocking on events from inside an event callback would stall the dispatch greenlet
        that must deliver them: refuse instead of deadlocking until the timeout."""
        if gevent.getcurrent() is self._conn._process_events_greenlet:
            raise RuntimeError('%s called from an event callback (the dispatch greenlet): '
                               'spawn a greenlet instead' % what)

    def _raise_if_gone(self):
        if self.gone:
            raise CallGone(self.hangup_cause, self.uuid)

    def _mark_gone(self, cause):
        if self.gone:
            return
        self.gone = True
        if cause and not self.hangup_cause:
            self.hangup_cause = cause
        log.info('[%s] call gone (%s)', self.uuid, self.hangup_cause or 'disconnected')
        exc = CallGone(self.hangup_cause, self.uuid)
        executions, self._executions = self._executions, {}
        for execution in executions.values():
            execution._fail(exc)
        self._gone_event.set()
        for queue in list(self._queues):
            queue._wake()

    # -- event dispatch (runs in the connection's dispatch greenlet; never blocks) ---------
    def _on_event(self, event):
        name = event.name
        is_notice = event.content_type == 'text/disconnect-notice'
        if name == 'CHANNEL_ANSWER':
            self.answered = True
        elif name == 'CHANNEL_EXECUTE_COMPLETE':
            execution = self._executions.pop(event.get('Application-UUID'), None)
            if execution is not None:
                execution._complete(event)
        elif name in ('CHANNEL_HANGUP', 'CHANNEL_HANGUP_COMPLETE'):
            if not self.hangup_cause:
                self.hangup_cause = event.get('Hangup-Cause')
            self._mark_gone(self.hangup_cause)
        elif is_notice:
            self._mark_gone(self.hangup_cause)
        for queue in list(self._queues):
            if queue.matches(event):
                queue._put(event)
        keys = ('DISCONNECT', '*') if is_notice else (name, event.subclass, '*')
        for key in keys:
            if key is None:
                continue
            for callback in list(self._callbacks.get(key, ())):
                started = time.monotonic()
                try:
                    callback(event)
                except Exception:
                    log.exception('[%s] event callback %r failed on %r', self.uuid, callback, event)
                if time.monotonic() - started > 0.1:
                    log.warning('[%s] event callback %r blocked dispatch (callbacks must not block)', self.uuid, callback)
        if name == 'CHANNEL_HANGUP_COMPLETE':
            self._hangup_complete = event
            self.hangup_complete_delivered = True
            self._hangup_complete_seen.set()
            for queue in list(self._queues):
                queue._wake()

    def _on_socket_closed(self, reason):
        self.socket_closed = True
        self._mark_gone(self.hangup_cause)
        self._hangup_complete_seen.set()
        for queue in list(self._queues):
            queue._wake()
        log.debug('[%s] outbound socket closed: %s', self.uuid, reason)

    # -- executing apps ----------------------------------------------------------------------
    def execute_async(self, app, arg=''):
        """Queue `app arg` (sendmsg execute, event-lock, fresh Event-UUID, body-form arg);
        returns an Execution at once. Raises CallGone, ESLTimeout, ESLError, ValueError."""
        self._raise_if_gone()
        if not isinstance(app, str) or not _APP_NAME.match(app):
            raise ValueError('bad application name %r' % (app,))
        arg = '' if arg is None else str(arg)
        if not self.expansion_disabled:
            arg = escape_app_arg(arg)
        app_uuid = str(uuid_mod.uuid4())
        execution = Execution(self, app, arg, app_uuid)
        raw = build_command('sendmsg', {
            'call-command': 'execute',
            'execute-app-name': app,
            'event-lock': 'true',
            'Event-UUID': app_uuid,
            'content-type': 'text/plain',
        }, body=arg)
        self._executions[app_uuid] = execution
        try:
            reply = self._conn.send_raw(raw, timeout=self.command_timeout, what='sendmsg %s' % app)
        except ESLDisconnected:
            self._executions.pop(app_uuid, None)
            raise CallGone(self.hangup_cause, self.uuid) from None
        except BaseException:
            self._executions.pop(app_uuid, None)
            raise
        text = reply.reply_text or ''
        if text.startswith('-ERR'):
            self._executions.pop(app_uuid, None)
            if self.gone:
                raise CallGone(self.hangup_cause, self.uuid)
            raise ESLError('sendmsg %s: %s' % (app, text), reply=text)
        return execution

    def execute(self, app, arg='', timeout=None):
        """Run `app arg` and wait for its CHANNEL_EXECUTE_COMPLETE (matched on Application-UUID)."""
        return self.execute_async(app, arg).wait(timeout)

    def running_apps(self):
        """Names of the apps sent with sendmsg whose EXECUTE_COMPLETE has not come yet."""
        return [execution.app for execution in list(self._executions.values())]

    def api(self, command, timeout=10.0):
        """`api <command>` on this socket (needs `full`); returns the api/response body as is."""
        self._raise_if_gone()
        try:
            reply = self._conn.send('api ' + command, timeout=timeout)
        except ESLDisconnected:
            raise CallGone(self.hangup_cause, self.uuid) from None
        return self._api_body(command, reply)

    @staticmethod
    def _api_body(command, reply):
        """The api/response body; a `-ERR` command/reply (e.g. permission denied) raises ESLError."""
        if reply.content_type == 'command/reply':
            text = reply.reply_text or ''
            if text.startswith('-ERR'):
                raise ESLError('api %s: %s' % (command.split(' ', 1)[0], text), reply=text)
        return reply.body or ''

    def _api_ok(self, command, timeout=10.0):
        body = self.api(command, timeout=timeout)
        if body.startswith('-ERR') or body.startswith('-USAGE'):
            raise ESLError('api %s: %s' % (command.split(' ', 1)[0], body.strip()), reply=body)
        return body

    # -- helpers -----------------------------------------------------------------------------
    def answer(self):
        event = self.execute('answer')
        self.answered = True
        return event

    def pre_answer(self):
        return self.execute('pre_answer')

    def hangup(self, cause='NORMAL_CLEARING', timeout=5.0):
        """Hang the call up with `uuid_kill` (immediate, even while a locked app runs) and wait
        for CHANNEL_HANGUP. Never raises because the call is already gone."""
        if not _CAUSE.match(cause or ''):
            raise ValueError('bad hangup cause %r' % (cause,))
        if self.gone:
            return
        try:
            body = self.api('uuid_kill %s %s' % (self.uuid, cause), timeout=timeout)
        except CallGone:
            return
        if body.startswith('-ERR'):        # "No such channel": it is already gone
            log.info('[%s] uuid_kill: %s', self.uuid, body.strip())
            return
        if not self._gone_event.wait(timeout):
            log.warning('[%s] no CHANNEL_HANGUP within %.1fs after uuid_kill', self.uuid, timeout)

    def break_media(self, all=False):
        """`uuid_break` the running app (`all`: also flush queued apps)."""
        return self._api_ok('uuid_break %s%s' % (self.uuid, ' all' if all else ''))

    def set_var(self, name, value):
        """Set channel variable `name` to any text (`uuid_setvar`, its value quoted with
        fsargs.quote_api_arg); an empty value unsets it. FreeSWITCH 1.10.12 stores the value as it
        arrives, `${...}` and `$${...}` included, unexpanded: uuid_setvar adds it without the
        variable check switch_channel_set_variable makes (tests/fixtures/fs-captures/api-argsplit.json,
        e.g. `${uuid}`). A control character other than tab, newline and carriage return raises
        ValueError (no API argument carries it unchanged)."""
        if not isinstance(name, str) or not _VAR_NAME.match(name):
            raise ValueError('bad channel variable name %r' % (name,))
        value = '' if value is None else str(value)
        command = 'uuid_setvar %s %s' % (self.uuid, name)
        if value:
            command += ' ' + quote_api_arg(value)
        self._api_ok(command)

    def get_var(self, name):
        if not isinstance(name, str) or not _VAR_NAME.match(name):
            raise ValueError('bad channel variable name %r' % (name,))
        body = self._api_ok('uuid_getvar %s %s' % (self.uuid, name))
        return None if body == '_undef_' else body

    # -- events ------------------------------------------------------------------------------
    def subscribe(self, *names):
        if not names:
            raise ValueError('subscribe() needs at least one event name')
        queue = EventQueue(self, names)
        self._queues.append(queue)
        return queue

    def add_events(self, *names):
        """`event json <names>` on this socket: more events from now on (a subscription adds up;
        subclasses follow the word CUSTOM, e.g. `add_events('CUSTOM', 'conference::maintenance')`)."""
        self._raise_if_gone()
        try:
            reply = self._conn.send('event json ' + ' '.join(names), timeout=self.command_timeout)
        except ESLDisconnected:
            raise CallGone(self.hangup_cause, self.uuid) from None
        text = reply.reply_text or ''
        if text.startswith('-ERR'):
            raise ESLError('event json %s: %s' % (' '.join(names), text), reply=text)

    def _remove_queue(self, queue):
        try:
            self._queues.remove(queue)
        except ValueError:
            pass

    def on_event(self, name, callback):
        callbacks = self._callbacks.setdefault(name, [])
        if callback not in callbacks:
            callbacks.append(callback)

    def off_event(self, name, callback):
        callbacks = self._callbacks.get(name, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def wait_hangup_complete(self, timeout=5.0):
        """The CHANNEL_HANGUP_COMPLETE event, or None (socket closed without it / timeout)."""
        self._refuse_in_dispatch('wait_hangup_complete')
        self._hangup_complete_seen.wait(wait_s(timeout))
        return self._hangup_complete

    def wait_gone(self, timeout=None):
        return self._gone_event.wait(wait_s(timeout))

    def close(self, send_exit=True):
        """Send `exit` (FreeSWITCH needs it with infinite linger) and close the socket. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._conn.close(send_exit=send_exit, timeout=2.0)

    def __repr__(self):
        return '<CallSession %s to=%s%s>' % (self.uuid, self.destination_number, ' gone' if self.gone else '')
