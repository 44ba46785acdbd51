"""The API commands that act on one channel by uuid: uuid_kill, uuid_break, uuid_exists,
uuid_getvar, uuid_setvar, uuid_setvar_multi, uuid_answer, uuid_pre_answer, uuid_send_dtmf,
uuid_transfer, uuid_record, uuid_broadcast; each `handler(sim, args) -> str`, replying as
FreeSWITCH 1.10.12 does. Arguments are split as mod_commands splits them: switch_separate_string
with the C code's slot count (uuid_setvar 3, uuid_getvar 4, uuid_send_dtmf 2, uuid_transfer and
uuid_record 5, uuid_broadcast 4; tests/fixtures/fs-captures/api-argsplit.json), or at the first
space where the C code does that (uuid_kill, uuid_break).

Approximated: `uuid_send_dtmf` plays the DTMF tones to the caller (what FreeSWITCH sends out over
RTP), it does not queue DTMF on the channel itself (use the call script or `sim_dtmf` for that); on
a loopback leg its partner receives them (switch_sim.loopback). It answers `+OK <uuid> sent DTMF
<digits>.` (tests/fixtures/fs-captures/bridge.json).
"""
from __future__ import annotations

import gevent

from ..apps.record_session import parse_recording_vars, start_record_session, stop_record_session
from ..argsplit import separate_string
from ..channel_exec import Message
from ..media import ArraySource, dtmf_sequence

NO_CHANNEL = '-ERR No such channel!\n'


def find_channel(sim, uuid):
    return sim.get_channel(uuid) if uuid else None


def uuid_api(usage: str | None, need: int = 1, missing: str = NO_CHANNEL, split=str.split, at: int = 0):
    """Make `func(sim, ch, parts)` an API handler `(sim, args) -> str`: the arguments split by
    `split`; `usage` when there are fewer than `need` of them, `missing` when `parts[at]` names no
    channel; otherwise what `func` replies."""
    def wrap(func):
        def handler(sim, args):
            parts = split(args)
            if len(parts) < need:
                return usage
            ch = find_channel(sim, parts[at])
            if ch is None:
                return missing
            return func(sim, ch, parts)
        handler.__name__ = handler.__qualname__ = func.__name__
        handler.__doc__ = func.__doc__
        return handler
    return wrap


def _whole(args: str) -> list[str]:
    return [args.strip()]


def _first_space(args: str) -> list[str]:
    return args.split(' ', 1) if args else []


@uuid_api('-USAGE: <uuid> [cause]\n', split=_first_space)
def api_uuid_kill(sim, ch, parts):
    ch.hangup(parts[1] if len(parts) > 1 and parts[1] else 'NORMAL_CLEARING')
    return '+OK\n'


@uuid_api('-USAGE: <uuid> [all]\n', split=_first_space)
def api_uuid_break(sim, ch, parts):
    ch.break_playback(all_files=len(parts) > 1 and 'all' in parts[1])
    return '+OK\n'


def api_uuid_exists(sim, args):
    return 'true' if find_channel(sim, args.strip()) is not None else 'false'


def _slots(n):
    """switch_separate_string(' ') into `n` slots; a first slot that is empty counts as none."""
    def split(args):
        parts = separate_string(args, max_parts=n)
        return parts if parts and parts[0] else []
    return split


@uuid_api('-USAGE: <uuid> <var>\n', need=2, split=_slots(4))
def api_uuid_getvar(sim, ch, parts):
    if not parts[1]:
        return '-ERR No variable name specified!\n'
    value = ch.get_variable(parts[1])
    return value if value not in (None, '') else '_undef_'


@uuid_api('-USAGE: <uuid> <var> [value]\n', need=2, split=_slots(3))
def api_uuid_setvar(sim, ch, parts):
    if not parts[1]:
        return '-ERR No variable specified\n'
    ch.set_variable(parts[1], parts[2] if len(parts) > 2 else None)
    return '+OK\n'


@uuid_api('-USAGE: <uuid> <var>=<value>;<var>=<value>...\n', need=2, split=lambda args: args.split(None, 1))
def api_uuid_setvar_multi(sim, ch, parts):
    for item in parts[1].split(';'):
        name, _, value = item.partition('=')
        if name.strip():
            ch.set_variable(name.strip(), value)
    return '+OK\n'


@uuid_api(None, need=0, missing='-ERR no such channel\n', split=_whole)
def api_uuid_answer(sim, ch, parts):
    ch.answer()
    return '+OK\n'


@uuid_api(None, need=0, missing='-ERR no such channel\n', split=_whole)
def api_uuid_pre_answer(sim, ch, parts):
    ch.pre_answer()
    return '+OK\n'


class _ToneInjector:
    """Plays a fixed sample array into the write stream (mixed), then removes itself."""

    def __init__(self, ch, samples):
        self.ch = ch
        self.src = ArraySource(samples)

    def pull(self, nbytes):
        data = self.src.read(nbytes // 2)
        if self.src.done:
            gevent.spawn(self.ch.remove_write_injector, self)
        return data.tobytes()


@uuid_api('-USAGE: <uuid> <dtmf_data>\n', need=2, missing='-ERR no such channel\n', split=_slots(2))
def api_uuid_send_dtmf(sim, ch, parts):
    if not parts[1]:
        return '-USAGE: <uuid> <dtmf_data>\n'
    digits, _, dur = parts[1].partition('@')
    from ..loopback import send_dtmf_to_far_end
    if not send_dtmf_to_far_end(ch, digits):  # a loopback leg: its partner receives the digits
        samples = dtmf_sequence(digits, int(dur) if dur.isdigit() else 250)
        if samples is not None:
            ch.add_write_injector(_ToneInjector(ch, samples))
    return '+OK %s sent DTMF %s.\n' % (ch.uuid, parts[1])


def parse_inline_apps(text: str) -> list[tuple[str, str]]:
    """The inline dialplan: `app:arg,app2:arg` (`^^X` prefix switches the delimiter, as in FS)."""
    apps = []
    for item in separate_string(text, delim=','):
        item = item.strip()
        if not item:
            continue
        app, _, arg = item.partition(':')
        apps.append((app.strip(), arg))
    return apps


@uuid_api('-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n', need=2,
          split=lambda args: separate_string(args, max_parts=5))
def api_uuid_transfer(sim, ch, parts):
    rest = [p for p in parts[1:] if p not in ('-bleg', '-both')]
    if not rest:
        return '-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n'
    dest = rest[0]
    dialplan = rest[1] if len(rest) > 1 else 'XML'
    if dialplan == 'inline':
        apps = parse_inline_apps(dest)
    else:
        ch.destination = dest
        apps = sim.route(dest)
    ch.transfer(apps)
    return '+OK\n'


@uuid_api('-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n', need=3,
          missing='-ERR Cannot locate session!\n', split=lambda args: separate_string(args, max_parts=5))
def api_uuid_record(sim, ch, parts):
    action, path = parts[1].lower(), parts[2]
    if action == 'start':
        limit = None
        rec_vars = []
        for p in parts[3:]:
            if p.lstrip('+').isdigit():
                limit = int(p.lstrip('+'))
            elif p.startswith('{'):
                rec_vars = parse_recording_vars(p)
        return '+OK Success\n' if start_record_session(ch, path, limit, rec_vars) else '-ERR Cannot record session!\n'
    if action == 'stop':
        return '+OK Success\n' if stop_record_session(ch, path) else '-ERR Cannot stop record session!\n'
    return '-ERR %s is not implemented by the simulator\n' % action


@uuid_api('-USAGE: <uuid> <path> [aleg|bleg|both]\n', need=2, missing='-ERR invalid uuid\n',
          split=lambda args: separate_string(args, max_parts=4))
def api_uuid_broadcast(sim, ch, parts):
    """switch_ivr_broadcast: the legs argument (mod_commands matches `both`, `aleg`, `bleg` as
    substrings; absent: aleg) chooses the channel, its partner (`signal_bond`, the bridge's other
    leg), or both; `bleg` with no partner queues nothing and still answers +OK
    (tests/fixtures/fs-captures/bridge-broadcast.json). A bridged partner runs the app at once
    inside its bridge (switch_sim/apps/bridge.py)."""
    path = parts[1]
    legs = parts[2].lower() if len(parts) > 2 and parts[2] else 'aleg'
    if '::' in path:
        app, _, arg = path.partition('::')
    else:
        app, arg = 'playback', path
    cause = None
    if '!' in app:
        app, _, cause = app.partition('!')
    targets = []
    if 'bleg' in legs or 'both' in legs:
        partner = find_channel(sim, ch.get_variable('signal_bond'))
        if partner is not None and not partner.hungup:
            targets.append(partner)
    if 'aleg' in legs or 'both' in legs:
        targets.append(ch)
    for target in targets:
        headers = [('call-command', 'execute'), ('execute-app-name', app), ('execute-app-arg', arg),
                   ('event-lock', 'true')]
        target.queue_message(Message(headers, None, ''))
    if cause and ch in targets:
        ch.queue_message(Message([('call-command', 'hangup'), ('hangup-cause', cause)], None, ''))
    return '+OK Message sent\n'
