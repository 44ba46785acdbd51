"""API commands of the simulated switch (`api`/`bgapi`): handlers `handler(sim, args) -> str`.

Core call-control APIs: uuid_kill, uuid_break, uuid_exists, uuid_getvar, uuid_setvar,
uuid_setvar_multi, uuid_answer, uuid_pre_answer, uuid_send_dtmf, uuid_transfer, uuid_record,
uuid_broadcast, originate, show channels [as json], status, version, hupall, sched_api,
sched_hangup; and sim-only helpers (prefixed `sim_`): `sim_call <json>` (place a scripted call,
`+OK <uuid>`), `sim_dtmf <uuid> <digits>` (the caller presses keys).

Approximated: `uuid_send_dtmf` plays the DTMF tones to the caller (what FreeSWITCH sends out over
RTP), it does not queue DTMF on the channel itself (use the call script or `sim_dtmf` for that);
`originate` answers at once unless the endpoint is `error/<CAUSE>` (then `-ERR <CAUSE>`);
`status`/`show channels` print the same layout as FreeSWITCH with simulator values.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid as uuid_mod

import gevent
import numpy as np

from .argsplit import separate_string
from .channel import Channel, Message, normalize_cause
from .media import ArraySource, dtmf_tone, silence

log = logging.getLogger('switch_sim.apis')

NO_CHANNEL = '-ERR No such channel!\n'


def _channel(sim, uuid):
    return sim.get_channel(uuid) if uuid else None


def api_uuid_kill(sim, args):
    parts = args.split()
    if not parts:
        return '-USAGE: <uuid> [cause]\n'
    ch = _channel(sim, parts[0])
    if ch is None:
        return NO_CHANNEL
    ch.hangup(parts[1] if len(parts) > 1 else 'NORMAL_CLEARING')
    return '+OK\n'


def api_uuid_break(sim, args):
    parts = args.split()
    if not parts:
        return '-USAGE: <uuid> [all]\n'
    ch = _channel(sim, parts[0])
    if ch is None:
        return NO_CHANNEL
    ch.break_playback(all_files=len(parts) > 1 and parts[1] == 'all')
    return '+OK\n'


def api_uuid_exists(sim, args):
    return 'true' if _channel(sim, args.strip()) is not None else 'false'


def api_uuid_getvar(sim, args):
    parts = args.split()
    if len(parts) < 2:
        return '-USAGE: <uuid> <var>\n'
    ch = _channel(sim, parts[0])
    if ch is None:
        return NO_CHANNEL
    value = ch.get_variable(parts[1])
    return value if value not in (None, '') else '_undef_'


def api_uuid_setvar(sim, args):
    parts = args.split(None, 2)
    if len(parts) < 2:
        return '-USAGE: <uuid> <var> [value]\n'
    ch = _channel(sim, parts[0])
    if ch is None:
        return NO_CHANNEL
    ch.set_variable(parts[1], parts[2] if len(parts) > 2 else None)
    return '+OK\n'


def api_uuid_setvar_multi(sim, args):
    parts = args.split(None, 1)
    if len(parts) < 2:
        return '-USAGE: <uuid> <var>=<value>;<var>=<value>...\n'
    ch = _channel(sim, parts[0])
    if ch is None:
        return NO_CHANNEL
    for item in parts[1].split(';'):
        name, _, value = item.partition('=')
        if name.strip():
            ch.set_variable(name.strip(), value)
    return '+OK\n'


def api_uuid_answer(sim, args):
    ch = _channel(sim, args.strip())
    if ch is None:
        return '-ERR no such channel\n'
    ch.answer()
    return '+OK\n'


def api_uuid_pre_answer(sim, args):
    ch = _channel(sim, args.strip())
    if ch is None:
        return '-ERR no such channel\n'
    ch.pre_answer()
    return '+OK\n'


class _ToneInjector:
    """Plays a fixed sample array into the write stream (mixed), then removes itself."""

    def __init__(self, ch, samples: np.ndarray):
        self.ch = ch
        self.src = ArraySource(samples)

    def pull(self, nbytes):
        data = self.src.read(nbytes // 2)
        if self.src.done:
            gevent.spawn(self.ch.remove_write_injector, self)
        return data.tobytes()


def api_uuid_send_dtmf(sim, args):
    parts = args.split()
    if len(parts) < 2:
        return '-USAGE: <uuid> <dtmf_data>\n'
    ch = _channel(sim, parts[0])
    if ch is None:
        return '-ERR no such channel\n'
    digits, _, dur = parts[1].partition('@')
    ms = int(dur) if dur.isdigit() else 250
    pieces = []
    for c in digits:
        if c in 'wW':
            pieces.append(silence(500 if c == 'w' else 1000))
        elif c != '+':
            pieces += [dtmf_tone(c, ms), silence(50)]
    if pieces:
        ch.add_write_injector(_ToneInjector(ch, np.concatenate(pieces)))
    return '+OK Success\n'


def api_sim_dtmf(sim, args):
    parts = args.split()
    if len(parts) < 2:
        return '-USAGE: <uuid> <digits>\n'
    ch = _channel(sim, parts[0])
    if ch is None:
        return NO_CHANNEL
    for d in parts[1]:
        ch.queue_dtmf(d)
    return '+OK\n'


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


def api_uuid_transfer(sim, args):
    parts = separate_string(args)
    if len(parts) < 2:
        return '-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n'
    ch = _channel(sim, parts[0])
    if ch is None:
        return '-ERR No such channel!\n'
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


def api_uuid_record(sim, args):
    from .apps import _parse_recording_vars, start_record_session, stop_record_session
    parts = separate_string(args)
    if len(parts) < 3:
        return '-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n'
    ch = _channel(sim, parts[0])
    if ch is None:
        return '-ERR Cannot locate session!\n'
    action, path = parts[1].lower(), parts[2]
    if action == 'start':
        limit = None
        rec_vars = []
        for p in parts[3:]:
            if p.lstrip('+').isdigit():
                limit = int(p.lstrip('+'))
            elif p.startswith('{'):
                rec_vars = _parse_recording_vars(p)
        return '+OK Success\n' if start_record_session(ch, path, limit, rec_vars) else '-ERR Cannot record session!\n'
    if action == 'stop':
        return '+OK Success\n' if stop_record_session(ch, path) else '-ERR Cannot stop record session!\n'
    return '-ERR %s is not implemented by the simulator\n' % action


def api_uuid_broadcast(sim, args):
    parts = separate_string(args, max_parts=3)
    if len(parts) < 2:
        return '-USAGE: <uuid> <path> [aleg|bleg|both]\n'
    ch = _channel(sim, parts[0])
    if ch is None:
        return '-ERR invalid uuid\n'
    path = parts[1]
    if '::' in path:
        app, _, arg = path.partition('::')
    else:
        app, arg = 'playback', path
    cause = None
    if '!' in app:
        app, _, cause = app.partition('!')
    headers = [('call-command', 'execute'), ('execute-app-name', app), ('execute-app-arg', arg),
               ('event-lock', 'true')]
    ch.queue_message(Message(headers, None, ''))
    if cause:
        ch.queue_message(Message([('call-command', 'hangup'), ('hangup-cause', cause)], None, ''))
    return '+OK Message sent\n'


_ORIG_VARS = re.compile(r'^\{([^}]*)\}')


def parse_originate_vars(text: str):
    """`{a=1,b=2}` (also `[...]` / `<...>`) prefix -> (dict, rest)."""
    variables = {}
    text = text.strip()
    while text and text[0] in '{[<':
        close = {'{': '}', '[': ']', '<': '>'}[text[0]]
        end = text.find(close)
        if end < 0:
            break
        for item in separate_string(text[1:end], delim=','):
            k, _, v = item.partition('=')
            if k.strip():
                variables[k.strip()] = v
        text = text[end + 1:]
    return variables, text


def api_originate(sim, args):
    parts = separate_string(args)
    if len(parts) < 2:
        return ('-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] '
                '[<cid_name>] [<cid_num>] [<timeout_sec>]\n')
    url, target = parts[0], parts[1]
    variables, endpoint = parse_originate_vars(url)
    if endpoint.startswith('error/'):
        return '-ERR %s\n' % normalize_cause(endpoint[len('error/'):])
    if not endpoint:
        return '-ERR INVALID_URL\n'
    dest = endpoint.rstrip('/').split('/')[-1].split('@')[0]
    if target.startswith('&'):
        m = re.match(r'^&([\w-]+)(?:\((.*)\))?$', target, re.S)
        if not m:
            return '-ERR INVALID_URL\n'
        dialplan = [(m.group(1), m.group(2) or '')]
    else:
        dialplan = None
    cid_name = variables.pop('origination_caller_id_name', None) or (parts[4] if len(parts) > 4 else '')
    cid_num = variables.pop('origination_caller_id_number', None) or (parts[5] if len(parts) > 5 else '0000000000')
    uuid = variables.pop('origination_uuid', None) or str(uuid_mod.uuid4())
    if sim.get_channel(uuid) is not None:
        return '-ERR DESTINATION_OUT_OF_ORDER\n'
    audio = variables.pop('sim_audio', None)
    try:
        ch = sim.create_channel(direction='outbound', uuid=uuid, caller_number=cid_num, caller_name=cid_name,
                                destination=dest, variables=variables,
                                dialplan=dialplan if dialplan is not None else sim.route(target),
                                name='sofia/sim/%s' % endpoint.split('/')[-1], audio=audio,
                                answer_first=True)
    except Exception as exc:
        log.error('originate failed: %s', exc)
        return '-ERR DESTINATION_OUT_OF_ORDER\n'
    return '+OK %s\n' % ch.uuid


def api_sim_call(sim, args):
    from .caller import CallScript
    try:
        spec = json.loads(args)
        if not isinstance(spec, dict) or not spec.get('to'):
            raise ValueError('"to" is required')
        dtmf = [(str(d), float(t)) for d, t in spec.get('dtmf') or []]
        script = CallScript(to=str(spec['to']), from_=str(spec.get('from') or '15551230001'),
                            audio=spec.get('audio'), dtmf=dtmf,
                            hangup_after=spec.get('hangup_after'), save_heard=spec.get('save_heard'),
                            caller_name=str(spec.get('caller_name') or ''), vad=bool(spec.get('vad')))
        call = sim.place_call(script)
    except Exception as exc:
        return '-ERR %s\n' % str(exc).replace('\n', ' ')
    return '+OK %s\n' % call.uuid


CHANNEL_COLUMNS = ('uuid,direction,created,created_epoch,name,state,cid_name,cid_num,ip_addr,dest,application,'
                   'application_data,dialplan,context,read_codec,read_rate,read_bit_rate,write_codec,write_rate,'
                   'write_bit_rate,secure,hostname,presence_id,presence_data,accountcode,callstate,callee_name,'
                   'callee_num,callee_direction,call_uuid,sent_callee_name,sent_callee_num,initial_cid_name,'
                   'initial_cid_num,initial_ip_addr,initial_dest,initial_dialplan,initial_context').split(',')


def _channel_row(sim, ch: Channel) -> dict:
    created = ch.created_us / 1e6
    values = {
        'uuid': ch.uuid, 'direction': ch.direction,
        'created': time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(created)),
        'created_epoch': str(int(created)), 'name': ch.name, 'state': ch.running_state,
        'cid_name': ch.caller_name, 'cid_num': ch.caller_number, 'ip_addr': '127.0.0.1',
        'dest': ch.destination, 'application': ch.get_variable('current_application', ''),
        'application_data': ch.get_variable('current_application_data', ''), 'dialplan': 'XML',
        'context': ch.context, 'read_codec': 'L16', 'read_rate': '8000', 'read_bit_rate': '128000',
        'write_codec': 'L16', 'write_rate': '8000', 'write_bit_rate': '128000', 'secure': '',
        'hostname': sim.events.hostname, 'presence_id': '', 'presence_data': '', 'accountcode': '',
        'callstate': ch.call_state, 'callee_name': '', 'callee_num': '', 'callee_direction': '',
        'call_uuid': ch.uuid, 'sent_callee_name': '', 'sent_callee_num': '',
        'initial_cid_name': ch.caller_name, 'initial_cid_num': ch.caller_number, 'initial_ip_addr': '127.0.0.1',
        'initial_dest': ch.destination, 'initial_dialplan': 'XML', 'initial_context': ch.context,
    }
    return {k: values.get(k, '') for k in CHANNEL_COLUMNS}


def api_show(sim, args):
    parts = args.split()
    if not parts:
        return '-USAGE: show <channels|calls> [as json]\n'
    what = parts[0].lower()
    if what not in ('channels', 'calls'):
        return '-ERR show %s is not implemented by the simulator\n' % what
    rows = [_channel_row(sim, ch) for ch in sim.channels.values() if not ch.hungup]
    if parts[1:3] == ['as', 'json']:
        if not rows:
            return json.dumps({'row_count': 0})
        return json.dumps({'row_count': len(rows), 'rows': rows})
    lines = [','.join(CHANNEL_COLUMNS)]
    for row in rows:
        lines.append(','.join(row[c] for c in CHANNEL_COLUMNS))
    return '\n'.join(lines) + '\n\n%d total.\n' % len(rows)


def api_status(sim, args):
    up = time.time() - sim.started_at
    days, rem = divmod(int(up), 86400)
    hours, rem = divmod(rem, 3600)
    minutes, seconds = divmod(rem, 60)
    active = sum(1 for ch in sim.channels.values() if not ch.hungup)
    return ('UP %d years, %d days, %d hours, %d minutes, %d seconds, 0 milliseconds, 0 microseconds\n'
            'FreeSWITCH (Version 1.10.12-release switch_sim) is ready\n'
            '%d session(s) since startup\n'
            '%d session(s) - peak %d, last 5min %d \n'
            '0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n'
            '1000 session(s) max\n'
            'min idle cpu 0.00/100.00\n'
            'Current Stack Size/Max 240K/8192K\n'
            % (0, days, hours, minutes, seconds, sim.session_count, active, sim.peak_sessions, active))


def api_version(sim, args):
    return 'FreeSWITCH Version 1.10.12-release~64bit (switch_sim)\n'


def api_hupall(sim, args):
    parts = args.split()
    cause = normalize_cause(parts[0]) if parts else 'MANAGER_REQUEST'
    var = parts[1] if len(parts) > 1 else None
    val = parts[2] if len(parts) > 2 else None
    for ch in list(sim.channels.values()):
        if var and ch.get_variable(var) != val:
            continue
        ch.hangup(cause)
    if var:
        return '+OK hangup all channels matching [%s]=[%s] with cause: %s\n' % (var, val, cause)
    return '+OK hangup all channels with cause %s\n' % cause


def api_sched_api(sim, args):
    parts = args.split(None, 2)
    if len(parts) < 3:
        return '-ERR Invalid syntax. USAGE: [+@]<time> <group_name> <command_string>[&]\n'
    when, group, command = parts
    try:
        secs = float(when.lstrip('+@'))
    except ValueError:
        return '-ERR Invalid syntax. USAGE: [+@]<time> <group_name> <command_string>[&]\n'
    if when.startswith('@'):
        secs = 0.0 if secs < time.time() else secs - time.time()
    elif not when.startswith('+'):
        secs = max(0.0, secs - time.time())
    task_id = sim.next_task_id()
    cmd, _, cmd_args = command.rstrip('&').partition(' ')
    gevent.spawn_later(secs, sim.run_api, cmd, cmd_args.strip())
    return '+OK Added: %d, Group: %s\n' % (task_id, group)


def api_sched_hangup(sim, args):
    parts = args.split()
    if len(parts) < 2:
        return '-USAGE: [+]<time> <uuid> [<cause>]\n'
    ch = _channel(sim, parts[1])
    if ch is None:
        return '-ERR No such channel!\n'
    try:
        secs = float(parts[0].lstrip('+'))
    except ValueError:
        return '-USAGE: [+]<time> <uuid> [<cause>]\n'
    if not parts[0].startswith('+'):
        secs = max(0.0, secs - time.time())
    cause = parts[2] if len(parts) > 2 else 'ALLOTTED_TIMEOUT'
    gevent.spawn_later(secs, ch.hangup, cause)
    return '+OK\n'


CORE_APIS = {
    'uuid_kill': api_uuid_kill, 'uuid_break': api_uuid_break, 'uuid_exists': api_uuid_exists,
    'uuid_getvar': api_uuid_getvar, 'uuid_setvar': api_uuid_setvar, 'uuid_setvar_multi': api_uuid_setvar_multi,
    'uuid_answer': api_uuid_answer, 'uuid_pre_answer': api_uuid_pre_answer,
    'uuid_send_dtmf': api_uuid_send_dtmf, 'uuid_transfer': api_uuid_transfer, 'uuid_record': api_uuid_record,
    'uuid_broadcast': api_uuid_broadcast, 'originate': api_originate, 'show': api_show,
    'status': api_status, 'version': api_version, 'hupall': api_hupall, 'sched_api': api_sched_api,
    'sched_hangup': api_sched_hangup, 'sim_call': api_sim_call, 'sim_dtmf': api_sim_dtmf,
}
