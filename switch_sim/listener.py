"""One ESL connection on the switch side (shared by the inbound server and outbound sockets).

Owns: reading client packets (command line + headers + optional Content-Length body, leading blank
lines skipped), the per-listener event subscription (`event plain|json ...` adds up, `ALL`, CUSTOM
subclasses, `nixevent`, `noevents`, `myevents` uuid filter, `filter`/`filter delete` with FreeSWITCH's
positive/negative/regex rules), the outgoing queue with its writer greenlet, and the commands common
to both modes (`event`, `nixevent`, `noevents`, `filter`, `api`, `bgapi`, `exit`/`...`).

While a command is being handled, events are held back and sent after its reply (the listener thread
of mod_event_socket does not flush events while it runs a command, e.g. a synchronous `api`).
Not implemented (answered with an -ERR saying so): `event xml`, `log`/`nolog`, `sendevent`, `userauth`.
"""
from __future__ import annotations

import logging
import re
import socket
import uuid as uuid_mod

import gevent
from gevent.event import Event as GEvent
from gevent.queue import Queue

from .argsplit import api_command

log = logging.getLogger('switch_sim.listener')

MAX_CONTENT_LENGTH = 16 * 1024 * 1024
GOODBYE = b'Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n'
EVENT_FORMATS = ('plain', 'json', 'xml')


class ConnectionClosed(Exception):
    pass


class Packet:
    """A client -> switch packet: the command line, its headers (order kept), the body."""

    def __init__(self, command: str, headers: list[tuple[str, str]], body: str | None, raw: str,
                 line: str | None = None):
        self.command = command
        self.line = command if line is None else line     # the command line as sent (not trimmed)
        self.headers = headers
        self.body = body
        self.raw = raw

    def get(self, name, default=None):
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return default


class ESLConnection:
    """Base class; subclasses implement `run()` and extra commands in `handle_extra()`."""

    def __init__(self, sim, sock: socket.socket):
        self.sim = sim
        self.sock = sock
        self.fmt = 'plain'
        self.event_names: set[str] = set()
        self.all_events = False
        self.custom_subclasses: set[str] = set()
        self.all_custom = False
        self.filters: list[tuple[str, str]] = []
        self.myevents_uuid: str | None = None
        self.closed = False
        self.closed_for_events = False    # after the final notice: nothing more is queued
        self.released = GEvent()          # set when the connection is closed
        self._out: Queue = Queue()
        self._busy = False
        self._held: list[bytes] = []
        self._buf = b''
        self._writer = gevent.spawn(self._write_loop)

    # ------------------------------------------------------------------ output
    def _write_loop(self):
        try:
            while True:
                data = self._out.get()
                if data is None:
                    break
                self.sock.sendall(data)
        except OSError:
            pass
        finally:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass
            self.released.set()
            self.sim.remove_listener(self)

    def send(self, data: bytes) -> None:
        if not self.closed:
            self._out.put(data)

    def reply(self, text: str) -> None:
        self.send(('Content-Type: command/reply\nReply-Text: %s\n\n' % text).encode('utf-8'))

    def api_reply(self, body: str) -> None:
        payload = (body or '-ERR no reply\n').encode('utf-8')
        self.send(b'Content-Type: api/response\nContent-Length: %d\n\n' % len(payload) + payload)

    def close(self) -> None:
        """Flush what is queued, then close the socket."""
        if not self.closed:
            self.closed_for_events = True
            self._out.put(None)

    # ------------------------------------------------------------------ events
    def wants(self, ev) -> bool:
        name = ev.name
        if name == 'CUSTOM':
            if not (self.all_events or self.all_custom or (ev.subclass or '') in self.custom_subclasses):
                return False
        elif not (self.all_events or name in self.event_names):
            return False
        if self.myevents_uuid:
            if ev.get('Unique-ID') != self.myevents_uuid and ev.get('Job-Owner-UUID') != self.myevents_uuid:
                return False
        if self.filters and not self._passes_filters(ev):
            return False
        return True

    def _passes_filters(self, ev) -> bool:
        send = False
        for header, value in self.filters:
            hval = ev.get(header)
            if hval is None:
                continue
            pos = True
            comp = value
            while comp and comp[0] in '+- ':
                if comp[0] == '+':
                    pos = True
                elif comp[0] == '-':
                    pos = False
                comp = comp[1:]
            if send and pos:
                continue
            if comp.startswith('/'):
                pattern = comp[1:-1] if comp.endswith('/') and len(comp) > 1 else comp[1:]
                try:
                    match = re.search(pattern, hval) is not None
                except re.error:
                    match = False
            else:
                match = hval.lower() == comp.lower()
            if match:
                if pos:
                    send = True
                else:
                    return False
        return send

    def offer(self, ev) -> None:
        """Called by the simulator for every fired event."""
        if self.closed or self.closed_for_events or not self.wants(ev):
            return
        data = ev.cached_frame(self.fmt)
        if self._busy:
            self._held.append(data)
        else:
            self._out.put(data)

    # ------------------------------------------------------------------ input
    def read_packet(self, timeout: float | None = None) -> Packet:
        """Read one packet; raises ConnectionClosed, socket.timeout."""
        self.sock.settimeout(timeout)
        while True:
            # skip leading blank lines
            while self._buf.startswith(b'\n') or self._buf.startswith(b'\r\n'):
                self._buf = self._buf[1:] if self._buf.startswith(b'\n') else self._buf[2:]
            idx = self._header_end()
            if idx is not None:
                break
            if len(self._buf) > 10 * 1024 * 1024:
                raise ConnectionClosed('header block too long')
            self._fill()
        head, sep_len = idx
        block = self._buf[:head].decode('utf-8', 'replace')
        self._buf = self._buf[head + sep_len:]
        lines = block.replace('\r\n', '\n').split('\n')
        command = lines[0].strip()
        headers = []
        for line in lines[1:]:
            if ':' in line:
                k, _, v = line.partition(':')
                headers.append((k.strip(), v.strip()))
        body = None
        clen = None
        for k, v in headers:
            if k.lower() == 'content-length':
                try:
                    clen = int(v)
                except ValueError:
                    raise ConnectionClosed('bad Content-Length')
        if clen is not None:
            if clen < 0 or clen > MAX_CONTENT_LENGTH:
                raise ConnectionClosed('Content-Length out of range')
            while len(self._buf) < clen:
                self._fill()
            body = self._buf[:clen].decode('utf-8', 'replace')
            self._buf = self._buf[clen:]
        return Packet(command, headers, body, block + '\n\n', line=lines[0])

    def _header_end(self):
        i = self._buf.find(b'\n\n')
        j = self._buf.find(b'\r\n\r\n')
        cands = [(x, n) for x, n in ((i, 2), (j, 4)) if x >= 0]
        if not cands:
            return None
        return min(cands)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionClosed('peer closed')
        self._buf += data

    # ------------------------------------------------------------------ command handling
    def process(self, packet: Packet) -> bool:
        """Handle a packet with events held back until its reply is queued. False = stop."""
        self._busy = True
        try:
            return self.handle(packet)
        except Exception as exc:   # a bug or bad input must not kill the connection silently
            log.exception('ESL command %r failed', packet.command[:80])
            self.reply('-ERR %s' % str(exc).replace('\n', ' ')[:200])
            return True
        finally:
            self._busy = False
            held, self._held = self._held, []
            for data in held:
                self._out.put(data)

    def handle(self, packet: Packet) -> bool:
        cmd, _, args = packet.command.partition(' ')
        cmd = cmd.lower()
        args = args.strip()
        if cmd in ('exit', '...'):
            self.reply('+OK bye')
            self.goodbye()
            return False
        if cmd == 'event':
            self.cmd_event(args)
        elif cmd == 'nixevent':
            self.cmd_nixevent(args)
        elif cmd == 'noevents':
            if self.all_events or self.event_names or self.custom_subclasses or self.all_custom:
                self.all_events = self.all_custom = False
                self.event_names.clear()
                self.custom_subclasses.clear()
                self.reply('+OK no longer listening for events')
            else:
                self.reply('-ERR not listening for events')
        elif cmd == 'filter':
            self.cmd_filter(args)
        elif cmd == 'api':
            self.cmd_api(*api_command(packet.line.partition(' ')[2]))
        elif cmd == 'bgapi':
            self.cmd_bgapi(*api_command(packet.line.partition(' ')[2]), packet.get('Job-UUID'))
        elif cmd in ('log', 'nolog', 'sendevent', 'userauth'):
            self.reply('-ERR %s is not implemented by the simulator' % cmd)
        elif not self.handle_extra(cmd, args, packet):
            self.reply('-ERR command not found')
        return not self.closed_for_events

    def handle_extra(self, cmd, args, packet) -> bool:
        return False

    def owner_uuid(self) -> str | None:
        return None

    def cmd_event(self, args: str) -> None:
        tokens = args.split()
        fmt = 'plain'
        if tokens and tokens[0].lower() in EVENT_FORMATS:
            fmt = tokens.pop(0).lower()
        if fmt == 'xml':
            self.reply('-ERR event xml is not implemented by the simulator')
            return
        if not tokens:
            self.reply('-ERR no keywords supplied')
            return
        for kind, name in _event_keywords(tokens):
            if kind == 'custom':
                self.custom_subclasses.add(name)
            elif name == 'ALL':
                self.all_events = True
            elif name != 'SOCKET_DATA' and re.fullmatch(r'[A-Z_0-9]+', name):
                self.event_names.add(name)
        self.fmt = fmt
        self.reply('+OK event listener enabled %s' % fmt)

    def cmd_nixevent(self, args: str) -> None:
        tokens = args.split()
        if not tokens:
            self.reply('-ERR no keywords supplied')
            return
        for kind, name in _event_keywords(tokens):
            if kind == 'custom':
                self.custom_subclasses.discard(name)
            elif name == 'ALL':
                self.all_events = False
                self.all_custom = False
                self.event_names.clear()
                self.custom_subclasses.clear()
            else:
                self.event_names.discard(name)
        self.reply('+OK events nixed')

    def cmd_filter(self, args: str) -> None:
        parts = args.split(None, 1)
        if not parts:
            self.reply('-ERR invalid syntax')
            return
        if parts[0].lower() == 'delete':
            rest = parts[1].split(None, 1) if len(parts) > 1 else []
            if not rest:
                self.reply('-ERR invalid syntax')
                return
            header = rest[0]
            value = rest[1] if len(rest) > 1 else None
            if header.lower() == 'all':
                self.filters = []
                self.reply('+OK filter deleted. [all]')
                return
            self.filters = [(h, v) for h, v in self.filters
                            if not (h.lower() == header.lower() and (value is None or v == value))]
            self.reply('+OK filter deleted. [%s][%s]' % (header, value or ''))
            return
        if len(parts) < 2:
            self.reply('-ERR invalid syntax')
            return
        header, value = parts[0], parts[1]
        self.filters.append((header, value))
        self.reply('+OK filter added. [%s]=[%s]' % (header, value))

    def cmd_api(self, command: str, cmd_args: str) -> None:
        body = self.sim.run_api(command, cmd_args, owner=self)
        self.api_reply(body)

    def cmd_bgapi(self, command: str, cmd_args: str, job_uuid: str | None) -> None:
        job = job_uuid or str(uuid_mod.uuid4())
        self.send(('Content-Type: command/reply\nReply-Text: +OK Job-UUID: %s\nJob-UUID: %s\n\n'
                   % (job, job)).encode('utf-8'))
        owner = self.owner_uuid()
        gevent.spawn(self.sim.run_background_job, job, command, cmd_args, owner)

    def goodbye(self, controlled_uuid: str | None = None) -> None:
        """The final disconnect notice (67-byte body), then close."""
        if controlled_uuid:
            head = ('Content-Type: text/disconnect-notice\nControlled-Session-UUID: %s\n'
                    'Content-Disposition: disconnect\nContent-Length: %d\n\n' % (controlled_uuid, len(GOODBYE)))
        else:
            head = 'Content-Type: text/disconnect-notice\nContent-Length: %d\n\n' % len(GOODBYE)
        self.send(head.encode('ascii') + GOODBYE)
        self.close()


def _event_keywords(tokens):
    """The words of `event` / `nixevent`: ('event', NAME) upper-cased, then after the CUSTOM
    keyword ('custom', subclass) as given (mod_event_socket's parsing)."""
    custom = False
    for tok in tokens:
        if custom:
            yield 'custom', tok
        elif tok.upper() == 'CUSTOM':
            custom = True
        else:
            yield 'event', tok.upper()
