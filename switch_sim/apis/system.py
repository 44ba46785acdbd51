"""The API commands about the whole switch: show channels|calls [as json], status, version, hupall,
the scheduler (sched_api, sched_hangup), and fsctl pause|resume|pause_check [inbound|outbound].

`fsctl pause inbound` as FreeSWITCH 1.10.12 has it (tests/fixtures/fs-captures/pause-inbound.json):
no new inbound session (a scripted call is refused, Simulator.place_call; a loopback originate or
bridge never gets its inbound -b leg: its -a leg stays DOWN until it times out with NO_ANSWER,
apis/calls.py, loopback.py); channels that exist go on; `pause_check` answers `true`/`false` without
a newline, and with no direction it is true only when both directions are paused.

Approximated: `status`/`show channels` print the same layout as FreeSWITCH with simulator values.
"""
from __future__ import annotations

import json
import time

import gevent

from ..causes import normalize_cause
from .uuid_commands import uuid_api

CHANNEL_COLUMNS = ('uuid,direction,created,created_epoch,name,state,cid_name,cid_num,ip_addr,dest,application,'
                   'application_data,dialplan,context,read_codec,read_rate,read_bit_rate,write_codec,write_rate,'
                   'write_bit_rate,secure,hostname,presence_id,presence_data,accountcode,callstate,callee_name,'
                   'callee_num,callee_direction,call_uuid,sent_callee_name,sent_callee_num,initial_cid_name,'
                   'initial_cid_num,initial_ip_addr,initial_dest,initial_dialplan,initial_context').split(',')


def _channel_row(sim, ch) -> dict:
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


@uuid_api('-USAGE: [+]<time> <uuid> [<cause>]\n', need=2, at=1)
def api_sched_hangup(sim, ch, parts):
    try:
        secs = float(parts[0].lstrip('+'))
    except ValueError:
        return '-USAGE: [+]<time> <uuid> [<cause>]\n'
    if not parts[0].startswith('+'):
        secs = max(0.0, secs - time.time())
    cause = parts[2] if len(parts) > 2 else 'ALLOTTED_TIMEOUT'
    gevent.spawn_later(secs, ch.hangup, cause)
    return '+OK\n'


def api_fsctl(sim, args):
    parts = args.split()
    command = parts[0].lower() if parts else ''
    direction = parts[1].lower() if len(parts) > 1 else ''
    if command in ('pause', 'resume'):
        paused = command == 'pause'
        if direction != 'outbound':      # inbound, or neither named: both (SCSC_PAUSE_ALL)
            sim.paused_inbound = paused
        if direction != 'inbound':
            sim.paused_outbound = paused
        return '+OK\n'
    if command == 'pause_check':
        if direction == 'inbound':
            return 'true' if sim.paused_inbound else 'false'
        if direction == 'outbound':
            return 'true' if sim.paused_outbound else 'false'
        return 'true' if sim.paused_inbound and sim.paused_outbound else 'false'
    return '-ERR fsctl %s is not implemented by the simulator\n' % command
