"""The ESL transport: `ESLConnection`, a subclass of greenswitch's `ESLProtocol` that keeps its
plumbing (handler registry, reply FIFO, receive + dispatch greenlets) and replaces what it gets
wrong (docs/internals.md esl_app):

- reading: raw `recv` fed to our byte-exact `ESLParser` (greenswitch decodes and unquotes whole
  blocks and merges event bodies into the headers);
- sending: one lock around "append reply slot + `sendall`" so concurrent greenlets never
  interleave or mismatch replies; every wait has a timeout (`ESLTimeout`); `send_pipelined`
  writes several commands at once and returns their reply slots (`PendingReply`), in order;
- dispatch: handlers registered for the Event-Name, for the Event-Subclass of CUSTOM events, and
  `'*'` (a tap that sees every event, not greenswitch's fallback); `'DISCONNECT'` for disconnect
  notices; a handler that raises is logged and skipped; one that blocks is reported;
- the disconnect notice: `Content-Disposition: linger` keeps the connection (`.lingering`), any
  other notice, EOF or a framing error ends it: pending replies fail with `ESLDisconnected` and
  `on_close(reason)` runs after every event already received has been dispatched; then the
  connection drops `on_close` and its handlers (they are usually bound methods of its owner: a
  reference cycle that would leave every finished call to the cyclic GC).
"""
import logging
import socket
import time

import gevent
import gevent.event
import gevent.lock
import gevent.queue
from greenswitch.esl import ESLProtocol

from .errors import ESLDisconnected, ESLError, ESLProtocolError, ESLTimeout
from .events import ESLParser

log = logging.getLogger(__name__)

_END_OF_STREAM = object()
SLOW_HANDLER_S = 0.1
RECV_SIZE = 65536


def build_command(command, headers=None, body=None):
    """Serialize one client->FS command: command line, `Name: value` headers, blank line, body.

    `body` (str or bytes) gets a `content-length` counted in bytes. Newlines in the command line
    or in header names/values would break framing, so they are refused (ValueError)."""
    if '\n' in command or '\r' in command:
        raise ValueError('ESL command must be one line: %r' % command[:80])
    lines = [command]
    for name, value in (headers or {}).items():
        value = str(value)
        if any(c in name or c in value for c in '\r\n') or ':' in name:
            raise ValueError('bad ESL header %r: %r' % (name, value[:80]))
        lines.append('%s: %s' % (name, value))
    raw_body = b''
    if body is not None:
        raw_body = body.encode('utf-8') if isinstance(body, str) else bytes(body)
        lines.append('content-length: %d' % len(raw_body))
    return ('\n'.join(lines) + '\n\n').encode('utf-8') + raw_body


class PendingReply:
    """The reply slot of one command already written: `get(timeout)` -> the `command/reply` or
    `api/response` ESLEvent; raises ESLDisconnected (connection lost first), ESLTimeout."""

    __slots__ = ('label', 'what', 'result')

    def __init__(self, label, what):
        self.label = label
        self.what = what
        self.result = gevent.event.AsyncResult()

    def get(self, timeout=10.0):
        try:
            return self.result.get(timeout=timeout)
        except gevent.Timeout:
            raise ESLTimeout('[%s] no reply to %s within %.1fs' % (self.label, self.what, timeout)) from None


class ESLConnection(ESLProtocol):
    """One ESL socket (inbound or outbound) on top of greenswitch's ESLProtocol.

    `attach(sock)` starts the receive and dispatch greenlets. `send(...)` writes a command and
    waits (with a timeout) for its `command/reply` or `api/response`. `on_close(reason)`, if set,
    is called once from the dispatch greenlet after the last event.
    """

    def __init__(self, *args, label='esl', on_close=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.label = label
        self.on_close = on_close
        self.sock = None
        self.sock_file = None            # greenswitch reads through it; we do not
        self.lingering = False
        self.final_notice = None
        self.close_reason = None
        self._parser = ESLParser()
        self._send_lock = gevent.lock.BoundedSemaphore(1)
        self._closed = gevent.event.Event()
        self._lost = False

    # -- lifecycle ---------------------------------------------------------------------------
    def attach(self, sock):
        self.sock = sock
        self.sock.settimeout(None)
        self.connected = True
        self._run = True
        self.start_event_handlers()

    @property
    def closed(self):
        return self._closed.is_set()

    def wait_closed(self, timeout):
        return self._closed.wait(timeout)

    def close(self, send_exit=True, timeout=2.0):
        """Send `exit` (if still connected), close the socket and stop the greenlets. Idempotent."""
        if self.sock is None:          # never attached: nothing runs
            self._run = False
            self._closed.set()
            return
        if send_exit and self.connected and not self._lost:
            try:
                self.send('exit', timeout=timeout)
            except (ESLError, ESLTimeout, OSError):
                pass
        self._run = False
        self._shutdown_socket()
        current = gevent.getcurrent()
        if current is not self._process_events_greenlet and not self._closed.wait(timeout):
            log.warning('[%s] ESL connection did not shut down within %.1fs', self.label, timeout)
        for greenlet in (self._receive_events_greenlet, self._process_events_greenlet):
            if greenlet is not None and greenlet is not current and not greenlet.dead:
                greenlet.join(timeout)
                if not greenlet.dead:
                    greenlet.kill(block=False)

    def stop(self):            # greenswitch's name for close(): no unbounded joins here
        self.close()

    def _shutdown_socket(self):
        sock = self.sock
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass

    # -- receiving ---------------------------------------------------------------------------
    def receive_events(self):
        reason = 'closed'
        try:
            while True:
                try:
                    data = self.sock.recv(RECV_SIZE)
                except OSError as exc:
                    reason = 'closed locally' if not self._run else 'socket error: %s' % exc
                    break
                if not data:
                    reason = 'closed by peer' if self._run else 'closed locally'
                    break
                for event in self._parser.feed(data):
                    self.handle_event(event)
        except ESLProtocolError as exc:
            reason = 'protocol error: %s' % exc
            log.error('[%s] dropping ESL connection: %s', self.label, exc)
        finally:
            self._connection_lost(reason)

    def _connection_lost(self, reason):
        if self._lost:
            return
        self._lost = True
        self.connected = False
        self.close_reason = reason
        self._shutdown_socket()
        pending, self._commands_sent = self._commands_sent, []
        for result in pending:
            if not result.ready():
                result.set_exception(ESLDisconnected('ESL connection %s: %s' % (self.label, reason)))
        self._esl_event_queue.put(_END_OF_STREAM)

    def handle_event(self, event):
        content_type = event.content_type
        if content_type == 'auth/request':
            self._auth_request_event.set()
        elif content_type in ('command/reply', 'api/response'):
            if self._commands_sent:
                self._commands_sent.pop(0).set(event)
            else:
                log.warning('[%s] ESL reply with no command waiting: %r', self.label,
                            event.reply_text or (event.body or '')[:80])
        elif content_type == 'text/disconnect-notice':
            if event.outer_headers.get('Content-Disposition') == 'linger':
                self.lingering = True
            else:
                self.final_notice = event
                self.connected = False
            self._esl_event_queue.put(event)
        elif content_type == 'text/rude-rejection':
            self.connected = False
            log.error('[%s] FreeSWITCH rejected the connection: %s', self.label, (event.body or '').strip())
            self._auth_request_event.set()
            self._esl_event_queue.put(event)
        else:
            if event.parse_error:
                log.warning('[%s] ESL event %s: %s', self.label, event.name, event.parse_error)
            self._esl_event_queue.put(event)

    # -- dispatch ----------------------------------------------------------------------------
    def process_events(self):
        while True:
            try:
                item = self._esl_event_queue.get(timeout=1.0)
            except gevent.queue.Empty:
                if self._lost and self._esl_event_queue.empty():
                    break
                continue
            if item is _END_OF_STREAM:
                break
            self.dispatch(item)
        self._closed.set()
        on_close, self.on_close = self.on_close, None
        # nothing is dispatched any more: drop the handlers, which are usually bound methods of
        # the object owning this connection (a cycle), so the call's objects are freed by
        # reference counting at once instead of by the cyclic GC's full collections
        self.event_handlers = {}
        if on_close is not None:
            try:
                on_close(self.close_reason)
            except Exception:
                log.exception('[%s] on_close handler failed', self.label)

    def handler_keys(self, event):
        content_type = event.content_type
        if content_type == 'text/disconnect-notice':
            return ('DISCONNECT', '*')
        if content_type == 'log/data':
            return ('log', '*')
        name = event.name
        if name == 'CUSTOM' and event.subclass:
            return (name, event.subclass, '*')
        return (name, '*')

    def dispatch(self, event):
        for key in self.handler_keys(event):
            for handler in list(self.event_handlers.get(key, ())):
                self._safe_exec_handler(handler, event)

    def _safe_exec_handler(self, handler, event):
        started = time.monotonic()
        try:
            handler(event)
        except Exception:
            log.exception('[%s] ESL handler %r failed on %r', self.label, handler, event)
        elapsed = time.monotonic() - started
        if elapsed > SLOW_HANDLER_S:
            log.warning('[%s] ESL handler %r blocked dispatch for %.3fs (handlers must not block)',
                        self.label, handler, elapsed)

    # -- sending -----------------------------------------------------------------------------
    def send(self, command, headers=None, body=None, timeout=10.0):
        """Write one command and wait for its reply (`command/reply` or `api/response` ESLEvent).

        Raises ESLDisconnected (not connected / lost meanwhile), ESLTimeout (no reply in time)."""
        raw = build_command(command, headers, body)
        return self.send_raw(raw, timeout=timeout, what=command.split(' ', 1)[0])

    def send_raw(self, raw, timeout=10.0, what='command'):
        reply, = self._write([(raw, what)], timeout)
        return reply.get(timeout)

    def send_pipelined(self, commands, timeout=10.0):
        """Write several commands back to back (one `sendall`) without waiting in between;
        returns one `PendingReply` per command, in order. FreeSWITCH reads commands one at a time
        and answers each in order, so the replies come back in this order. `commands`: command
        strings (no headers, no body). Raises ESLDisconnected / ESLTimeout like send()."""
        raws = [(build_command(command), command.split(' ', 1)[0]) for command in commands]
        return self._write(raws, timeout)

    def _write(self, raws, timeout):
        """Queue one reply slot per (raw, what) and write them all under the send lock."""
        if not self.connected:
            raise ESLDisconnected('ESL connection %s is not connected (%s)' % (self.label, self.close_reason or 'not started'))
        pending = [PendingReply(self.label, what) for _raw, what in raws]
        what = '+'.join(p.what for p in pending)
        queued = False
        send_timer = gevent.Timeout(timeout)
        send_timer.start()
        try:
            with self._send_lock:
                if not self.connected:
                    raise ESLDisconnected('ESL connection %s is not connected' % self.label)
                self._commands_sent.extend(p.result for p in pending)
                queued = True
                self.sock.sendall(b''.join(raw for raw, _what in raws))
        except gevent.Timeout as exc:
            if exc is not send_timer:
                raise
            if queued:   # the reply FIFO is now out of step with the wire: the connection is unusable
                log.error('[%s] sending %s timed out after %.1fs; dropping the connection', self.label, what, timeout)
                self._shutdown_socket()
            raise ESLTimeout('[%s] sending %s timed out after %.1fs' % (self.label, what, timeout)) from None
        except OSError as exc:
            self._shutdown_socket()
            raise ESLDisconnected('ESL connection %s: send failed: %s' % (self.label, exc)) from None
        finally:
            send_timer.close()
        return pending

    def command(self, command, headers=None, body=None, timeout=10.0):
        """send() and raise ESLError on a `-ERR` command/reply. Returns the reply ESLEvent."""
        reply = self.send(command, headers=headers, body=body, timeout=timeout)
        text = reply.reply_text
        if reply.content_type == 'command/reply' and text is not None and text.startswith('-ERR'):
            raise ESLError('%s: %s' % (command.split(' ', 1)[0], text), reply=text)
        return reply
