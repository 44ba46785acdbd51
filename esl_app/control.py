"""`ControlConnection`: the one inbound ESL connection to FreeSWITCH (auth, `event json ...`,
`api`, `bgapi` with our own Job-UUID). It connects in the background, reconnects with capped
exponential backoff after a failure or a drop, and subscribes again after every reconnect."""
import logging
import socket
import uuid as uuid_mod

import gevent
import gevent.event
from greenswitch.esl import InboundESL

from .errors import ESLDisconnected, ESLError, ESLTimeout
from .protocol import ESLConnection

log = logging.getLogger(__name__)

DEFAULT_EVENTS = ('BACKGROUND_JOB', 'CHANNEL_HANGUP_COMPLETE')


def backoff_delays(initial, maximum):
    """initial, 2*initial, 4*initial, ... capped at maximum, forever."""
    delay = initial
    while True:
        yield min(delay, maximum)
        delay = min(delay * 2, maximum)


class ESLAuthError(ESLError):
    """FreeSWITCH refused our password."""


class InboundTransport(ESLConnection, InboundESL):
    """greenswitch's InboundESL with our transport: connect + auth, every wait bounded."""

    def __init__(self, host, port, password, timeout=5.0, label=None, on_close=None):
        super().__init__(host, port, password, timeout=timeout,
                         label=label or '%s:%s' % (host, port), on_close=on_close)

    def connect(self):
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # commands are small and awaited
        self.attach(sock)
        if not self._auth_request_event.wait(self.timeout):
            raise ESLTimeout('no auth/request from %s within %.1fs' % (self.label, self.timeout))
        if not self.connected:
            raise ESLDisconnected('FreeSWITCH at %s closed the connection before auth (%s)'
                                  % (self.label, self.close_reason or 'rejected'))
        self.authenticate()

    def authenticate(self):
        reply = self.send('auth %s' % self.password, timeout=self.timeout)
        if reply.reply_text != '+OK accepted':
            raise ESLAuthError('ESL authentication to %s failed (wrong password?): %s'
                               % (self.label, reply.reply_text), reply=reply.reply_text)


class ControlConnection:
    def __init__(self, host, port, password, events=DEFAULT_EVENTS, on_event=None,
                 connect_timeout=5.0, backoff_initial=0.5, backoff_max=30.0, command_timeout=10.0,
                 filters=()):
        """filters: (header, value) pairs sent as `filter header value` after the subscription (an
        event then passes when it matches one of them; a value `/re/` is a regular expression). A
        filtered connection is not given BACKGROUND_JOB: its bgapi results would be filtered out."""
        self.host = host
        self.port = int(port)
        self.password = password
        events = [e for e in events]
        self.filters = list(filters)
        if not self.filters and 'BACKGROUND_JOB' not in events and 'ALL' not in events:
            events.insert(0, 'BACKGROUND_JOB')     # bgapi needs it
        self.events = tuple(events)
        self.on_event = on_event
        self.connect_timeout = connect_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.command_timeout = command_timeout
        self.reconnects = 0
        self.last_error = None
        self._transport = None
        self._ever_connected = False
        self._connected_event = gevent.event.Event()
        self._stop_event = gevent.event.Event()
        self._jobs = {}
        self._loop = None

    @property
    def connected(self):
        transport = self._transport
        return transport is not None and transport.connected and self._connected_event.is_set()

    def start(self):
        if self._loop is None:
            self._stop_event.clear()
            self._loop = gevent.spawn(self._run)
        return self

    def stop(self, timeout=5.0):
        self._stop_event.set()
        transport = self._transport
        if transport is not None:
            transport.close(send_exit=True, timeout=min(timeout, 2.0))
        if self._loop is not None:
            self._loop.join(timeout)
            if not self._loop.dead:
                self._loop.kill(block=False)
            self._loop = None
        self._connected_event.clear()

    def wait_connected(self, timeout):
        return self._connected_event.wait(timeout)

    # -- connection loop ---------------------------------------------------------------------
    def _run(self):
        delays = backoff_delays(self.backoff_initial, self.backoff_max)
        delay = next(delays)
        while not self._stop_event.is_set():
            transport = InboundTransport(self.host, self.port, self.password, timeout=self.connect_timeout)
            transport.register_handle('*', self._on_transport_event)
            try:
                transport.connect()
                if self.events:
                    transport.command('event json ' + ' '.join(self.events), timeout=self.command_timeout)
                for header, value in list(self.filters):
                    transport.command('filter %s %s' % (header, value), timeout=self.command_timeout)
            except ESLAuthError as exc:
                self.last_error = str(exc)
                log.error('%s; retrying in %.1fs', exc, delay)
                transport.close(send_exit=False, timeout=1.0)
            except (ESLError, ESLTimeout, OSError) as exc:
                self.last_error = str(exc)
                log.warning('ESL control connection to %s:%s failed: %s; retrying in %.1fs',
                            self.host, self.port, exc, delay)
                transport.close(send_exit=False, timeout=1.0)
            else:
                if self._ever_connected:
                    self.reconnects += 1
                self._ever_connected = True
                self.last_error = None
                self._transport = transport
                self._connected_event.set()
                log.info('ESL control connection to %s:%s up (reconnects: %d)', self.host, self.port, self.reconnects)
                while not transport.wait_closed(1.0):
                    if self._stop_event.is_set():
                        break
                self._connected_event.clear()
                self._transport = None
                self._fail_jobs(ESLDisconnected('ESL control connection lost: %s' % transport.close_reason))
                if self._stop_event.is_set():
                    break
                log.warning('ESL control connection to %s:%s lost (%s); reconnecting',
                            self.host, self.port, transport.close_reason)
                delays = backoff_delays(self.backoff_initial, self.backoff_max)
                delay = next(delays)
            if self._stop_event.wait(delay):
                break
            delay = next(delays)

    def _on_transport_event(self, event):
        if event.name == 'BACKGROUND_JOB':
            result = self._jobs.get(event.get('Job-UUID'))
            if result is not None and not result.ready():
                result.set(event)
        if self.on_event is not None and event.is_event:
            self.on_event(event)

    def _fail_jobs(self, exc):
        jobs, self._jobs = self._jobs, {}
        for result in jobs.values():
            if not result.ready():
                result.set_exception(exc)

    # -- commands ----------------------------------------------------------------------------
    def _require_transport(self):
        transport = self._transport
        if transport is None or not self.connected:
            raise ESLDisconnected('ESL control connection to %s:%s is not connected%s'
                                  % (self.host, self.port, ': %s' % self.last_error if self.last_error else ''))
        return transport

    def add_filter(self, header, value):
        """One more `filter` (kept, and sent again after a reconnect). Raises ESLDisconnected, ESLTimeout."""
        self.filters.append((header, value))
        self._require_transport().command('filter %s %s' % (header, value), timeout=self.command_timeout)

    def remove_filter(self, header, value):
        """`filter delete` of one added with add_filter (forgotten even when the connection is down)."""
        if (header, value) in self.filters:
            self.filters.remove((header, value))
        transport = self._transport
        if transport is not None and self.connected:
            transport.command('filter delete %s %s' % (header, value), timeout=self.command_timeout)

    def api(self, cmd, timeout=10.0):
        """`api <cmd>`; returns the api/response body. Raises ESLDisconnected, ESLTimeout, ESLError."""
        reply = self._require_transport().command('api ' + cmd, timeout=timeout)
        return reply.body or ''

    def bgapi(self, cmd, timeout=30.0):
        """`bgapi <cmd>` with a Job-UUID we choose; returns the BACKGROUND_JOB body."""
        transport = self._require_transport()
        job_uuid = str(uuid_mod.uuid4())
        result = gevent.event.AsyncResult()
        self._jobs[job_uuid] = result
        try:
            transport.command('bgapi ' + cmd, headers={'Job-UUID': job_uuid},
                              timeout=min(timeout, self.command_timeout))
            try:
                event = result.get(timeout=timeout)
            except gevent.Timeout:
                raise ESLTimeout('bgapi %s: no BACKGROUND_JOB within %.1fs' % (cmd.split(' ', 1)[0], timeout)) from None
            return event.body or ''
        finally:
            self._jobs.pop(job_uuid, None)
