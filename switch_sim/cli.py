"""Command-line entry points: `callfork sim serve` (`serve_main`) and `callfork sim call` (`call_main`).

serve: runs a Simulator until SIGINT/SIGTERM and prints where it listens.
call: connects to a RUNNING `sim serve` over its inbound ESL, subscribes to `event plain ALL` first,
places the call with the sim-only API `sim_call <json>` (reply `+OK <uuid>`), then follows that
uuid's events until CHANNEL_HANGUP_COMPLETE. Prints a readable summary, or with --json a last line
that is one JSON object (uuid, answered, hangup_cause, duration_s, events, ...). Errors (simulator
not reachable, bad WAV, timeout) print a clear message to stderr and exit with code 2.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time

from .urlenc import url_decode


def _hostport(text: str, default_port: int):
    host, _, port = text.rpartition(':')
    if not host:
        host, port = port, str(default_port)
    return host, int(port)


# ------------------------------------------------------------------------------------------ serve
def serve_main(argv=None) -> int:
    import gevent
    from gevent.event import Event

    from .simulator import Simulator
    p = argparse.ArgumentParser(prog='callfork sim serve', description='Run the FreeSWITCH simulator.')
    p.add_argument('--esl', default='127.0.0.1:8021', help='inbound event socket listen address')
    p.add_argument('--password', default='ClueCon')
    p.add_argument('--socket', default='127.0.0.1:8084', help='where the dialplan `socket` app connects')
    p.add_argument('--flavor', default='jambonz', choices=['jambonz', 'drachtio'])
    p.add_argument('--media-dir', default=None, help='base directory for relative playback paths')
    args = p.parse_args(argv)
    try:
        sim = Simulator(esl=_hostport(args.esl, 8021), password=args.password,
                        socket_target=_hostport(args.socket, 8084), flavor=args.flavor,
                        media_dir=args.media_dir).start()
    except (OSError, ValueError) as exc:
        print('sim serve: cannot start: %s' % exc, file=sys.stderr)
        return 2
    host, port = sim.esl_address[:2]
    print('switch_sim: inbound ESL on %s:%d (password %s); calls run `socket %s:%d async full`; '
          'mod_audio_fork flavor %s' % (host, port, args.password, sim.socket_target[0], sim.socket_target[1],
                                         args.flavor), flush=True)
    stop = Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            gevent.signal_handler(sig, stop.set)
        except (ValueError, AttributeError):
            signal.signal(sig, lambda *a: stop.set())
    stop.wait()
    print('switch_sim: stopping', flush=True)
    sim.stop()
    return 0


# ------------------------------------------------------------------------------------------ call
class CLIError(Exception):
    pass


class _ESLReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b''

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise CLIError('the simulator closed the connection')
        self.buf += data

    def frame(self):
        while b'\n\n' not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b'\n\n')
        headers = {}
        for line in head.decode('utf-8', 'replace').split('\n'):
            k, sep, v = line.partition(': ')
            if sep:
                headers[k] = v
        body = b''
        if 'Content-Length' in headers:
            n = int(headers['Content-Length'])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        return headers, body.decode('utf-8', 'replace')


def _parse_plain_event(body: str) -> dict:
    head, _, _ = body.partition('\n\n')
    out = {}
    for line in head.split('\n'):
        k, sep, v = line.partition(': ')
        if sep and k not in out:
            out[k] = url_decode(v)
    return out


def _parse_dtmf(items):
    out = []
    for item in items or []:
        digits, sep, when = item.partition('@')
        if not sep or not digits:
            raise CLIError('bad --dtmf %r (expected DIGITS@SECONDS)' % item)
        try:
            out.append([digits, float(when)])
        except ValueError:
            raise CLIError('bad --dtmf %r (expected DIGITS@SECONDS)' % item)
    return out


def run_call(args) -> dict:
    spec = {'to': args.to, 'from': args.from_, 'dtmf': _parse_dtmf(args.dtmf)}
    if args.audio:
        if not os.path.isfile(args.audio):
            raise CLIError('audio file not found: %s' % args.audio)
        try:
            import soundfile
            soundfile.info(args.audio)
        except Exception as exc:
            raise CLIError('not a readable audio file: %s (%s)' % (args.audio, exc))
        spec['audio'] = os.path.abspath(args.audio)
    if args.hangup_after is not None:
        spec['hangup_after'] = args.hangup_after
    if args.save_heard:
        spec['save_heard'] = os.path.abspath(args.save_heard)
    host, port = _hostport(args.esl, 8021)
    try:
        sock = socket.create_connection((host, port), timeout=5)
    except OSError as exc:
        raise CLIError('cannot reach the simulator ESL at %s:%d (is `callfork sim serve` running?): %s'
                       % (host, port, exc))
    deadline = time.monotonic() + args.timeout
    sock.settimeout(max(1.0, args.timeout))
    reader = _ESLReader(sock)
    try:
        headers, _ = reader.frame()
        if headers.get('Content-Type') != 'auth/request':
            raise CLIError('unexpected greeting from %s:%d: %r' % (host, port, headers))
        sock.sendall(b'auth %s\n\n' % args.password.encode())
        headers, _ = reader.frame()
        if not headers.get('Reply-Text', '').startswith('+OK'):
            raise CLIError('authentication failed: %s' % headers.get('Reply-Text'))
        sock.sendall(b'event plain ALL\n\n')
        headers, _ = reader.frame()
        if not headers.get('Reply-Text', '').startswith('+OK'):
            raise CLIError('event subscription failed: %s' % headers.get('Reply-Text'))
        sock.sendall(b'api sim_call %s\n\n' % json.dumps(spec).encode())
        events = []
        uuid = None
        while uuid is None:
            headers, body = reader.frame()
            ctype = headers.get('Content-Type')
            if ctype == 'api/response':
                if not body.startswith('+OK '):
                    raise CLIError('the simulator refused the call: %s' % body.strip())
                uuid = body[4:].strip()
            elif ctype == 'text/event-plain':
                events.append(_parse_plain_event(body))
        summary = {'uuid': uuid, 'answered': False, 'hangup_cause': None, 'duration_s': None, 'events': [],
                   'to': args.to, 'from': args.from_}

        def consume(ev) -> bool:
            if ev.get('Unique-ID') != uuid:
                return False
            name = ev.get('Event-Name', '')
            if name == 'CUSTOM':
                name = 'CUSTOM %s' % ev.get('Event-Subclass', '')
            summary['events'].append(name)
            if name == 'CHANNEL_ANSWER':
                summary['answered'] = True
            if name == 'CHANNEL_HANGUP_COMPLETE':
                summary['hangup_cause'] = ev.get('Hangup-Cause') or ev.get('variable_hangup_cause')
                try:
                    summary['duration_s'] = int(ev.get('variable_mduration', '0')) / 1000.0
                except ValueError:
                    summary['duration_s'] = None
                if ev.get('variable_answer_epoch', '0') not in ('', '0'):
                    summary['answered'] = True
                return True
            return False

        for ev in events:
            if consume(ev):
                return summary
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CLIError('timed out after %ss waiting for the call %s to end' % (args.timeout, uuid))
            sock.settimeout(remaining)
            headers, body = reader.frame()
            if headers.get('Content-Type') == 'text/event-plain' and consume(_parse_plain_event(body)):
                return summary
    except socket.timeout:
        raise CLIError('timed out after %ss talking to the simulator' % args.timeout)
    finally:
        try:
            sock.sendall(b'exit\n\n')
        except OSError:
            pass
        sock.close()


def call_main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='callfork sim call', description='Place a scripted call on `sim serve`.')
    p.add_argument('--to', required=True)
    p.add_argument('--from', dest='from_', default='15551230001')
    p.add_argument('--audio', help='WAV the caller speaks')
    p.add_argument('--dtmf', action='append', help='DIGITS@SECONDS after the call starts (repeatable)')
    p.add_argument('--hangup-after', type=float, default=None, help='caller hangs up after S seconds')
    p.add_argument('--save-heard', help='write what the caller heard to this WAV')
    p.add_argument('--json', action='store_true', help='last line: one JSON object')
    p.add_argument('--esl', default='127.0.0.1:8021')
    p.add_argument('--password', default='ClueCon')
    p.add_argument('--timeout', type=float, default=120.0)
    args = p.parse_args(argv)
    try:
        summary = run_call(args)
    except CLIError as exc:
        print('sim call: %s' % exc, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
    else:
        print('call %s to %s from %s' % (summary['uuid'], summary['to'], summary['from']))
        print('  answered:     %s' % ('yes' if summary['answered'] else 'no'))
        print('  hangup cause: %s' % summary['hangup_cause'])
        print('  duration:     %.2f s' % (summary['duration_s'] or 0.0))
        print('  events:       %s' % ' '.join(summary['events']))
        if args.save_heard:
            print('  heard audio:  %s' % args.save_heard)
    return 0
