"""The `conference` API of the simulated switch (mod_conference's conference_api.c), replying as
FreeSWITCH 1.10.12 does (tests/fixtures/fs-captures/conference-mod.json):

    conference list [count]                      every room: "+OK Conference <name> (<n> members rate: 8000 flags: ...)" and its members
    conference <room> json_list                  the room and its members as JSON
    conference <room> stop                       stop the files playing
    conference <room> moh <file>|reset           the room's music on hold
    conference <room> list [count]               "<id>;<channel name>;<uuid>;<caller name>;<caller number>;<flags>;0;0;100", newest first
    conference <room> mute|unmute|deaf|undeaf|kick|hup <id>|all|last
    conference <room> play <file> [<id>]
    conference <room> say <text>                 no TTS engine in the profile: "-ERR (say) Error!"
    conference <room> recording start|stop <path>|all,  record <path>,  norecord <path>|all

An unknown room is "-ERR Conference <room> not found", an unknown member "-ERR Non-Existant ID <id>".
"""
from __future__ import annotations

import json
import time

from ..conference import registry

_MEMBER_ACTIONS = {'mute': ('mute', 'mute'), 'unmute': ('unmute', 'unmute'), 'deaf': ('deaf', 'deaf'),
                   'undeaf': ('undeaf', 'undeaf'), 'kick': ('kick', 'kicked'), 'hup': ('hup', 'hup')}


def _member_line(member) -> str:
    ch = member.channel
    return '%d;%s;%s;%s;%s;%s;0;0;100\n' % (member.id, ch.name, ch.uuid, ch.caller_name, ch.caller_number,
                                          member.list_flags())


def _room_list(room, count_only: bool) -> str:
    if count_only:
        return '%d' % len(room.members)
    return ''.join(_member_line(m) for m in room.newest_first())


def _json_list(room) -> str:
    """json_list's fields (cJSON_Print's tabs and newlines are not reproduced: JSON readers do not see them)."""
    now = time.time()
    members = [{
        'type': 'caller', 'id': m.id,
        'flags': {'can_hear': m.can_hear, 'can_see': True, 'can_speak': m.can_speak, 'hold': False,
                  'mute_detect': False, 'talking': m.talking, 'has_video': False, 'video_bridge': False,
                  'has_floor': room.floor_holder is m, 'is_moderator': m.moderator, 'end_conference': m.endconf,
                  'mandatory_member_end_conference': False, 'pass_digits': False},
        'uuid': m.channel.uuid, 'caller_id_name': m.channel.caller_name, 'caller_id_number': m.channel.caller_number,
        'join_time': int(now - m.joined), 'last_talking': 0, 'energy': 100, 'volume_in': 0, 'volume_out': 0,
        'output-volume': 0, 'input-volume': 0} for m in room.newest_first()]
    body = {'conference_name': room.name, 'member_count': len(room.members), 'ghost_count': 0, 'rate': 8000,
            'run_time': int(now - room.created), 'conference_uuid': room.uuid, 'canvas_count': 0,
            'max_bw_in': 0, 'force_bw_in': 0, 'video_floor_packets': 0, 'locked': False, 'destruct': False,
            'wait_mod': room.wait_mod, 'audio_always': False, 'running': True, 'answered': True,
            'enforce_min': room.enforce_min, 'bridge_to': False, 'dynamic': True, 'exit_sound': True,
            'enter_sound': True, 'recording': bool(room.recordings), 'video_bridge': False,
            'video_floor_only': False, 'video_rfc4579': False, 'variables': {}, 'members': members}
    return json.dumps([body], indent='\t')


def _act(room, member, action: str) -> None:
    if action in ('mute', 'unmute'):
        room.set_mute(member, action == 'mute')
    elif action in ('deaf', 'undeaf'):
        room.set_deaf(member, action == 'deaf')
    else:
        room.kick(member, action)


def api_conference(sim, args):
    parts = args.split()
    rooms = registry(sim)
    if not parts or parts[0] == 'list':
        if not rooms.rooms:
            return '+OK No active conferences.\n'
        count_only = len(parts) > 1 and parts[1] == 'count'
        out = []
        for room in list(rooms.rooms.values()):
            n = len(room.members)
            out.append('+OK Conference %s (%d member%s rate: 8000 flags: running|answered%s|dynamic|exit_sound'
                       '|enter_sound|json_status)\n' % (room.name, n, '' if n == 1 else 's',
                                                        '|enforce_min' if room.enforce_min else ''))
            out.append(_room_list(room, count_only) + ('\n' if count_only else ''))
        return ''.join(out)
    room = rooms.get(parts[0])
    if room is None or room.destroyed:
        return '-ERR Conference %s not found\n' % parts[0]
    if len(parts) < 2:
        return '-ERR Conference %s command required\n' % parts[0]
    command, rest = parts[1], parts[2:]
    if command == 'json_list':
        return _json_list(room)
    if command == 'list':
        return _room_list(room, bool(rest) and rest[0] == 'count')
    if command in _MEMBER_ACTIONS:
        action, word = _MEMBER_ACTIONS[command]
        if not rest:
            return '-ERR Non-Existant ID 0\n'
        if rest[0] == 'all':
            targets = room.newest_first()
        elif rest[0] == 'last':
            targets = room.newest_first()[:1]
        else:
            try:
                member = room.find(int(rest[0]))
            except ValueError:
                member = None
            if member is None:
                return '-ERR Non-Existant ID %s\n' % rest[0]
            targets = [member]
        out = []
        for member in targets:
            _act(room, member, action)
            out.append('+OK %s %d\n' % (word, member.id))
        return ''.join(out)
    if command == 'play':
        if not rest:
            return '-ERR (play) Error!\n'
        path = rest[0]
        if len(rest) > 1 and rest[1].isdigit():
            member = room.find(int(rest[1]))
            if member is None:
                return '-ERR (play) Member: %s not found.\n' % rest[1]
            if not room.play(path, member):
                return '-ERR (play) File: %s not found.\n' % path
            return '+OK (play) Playing file %s to member %d\n' % (path, member.id)
        if not room.play(path):
            return '-ERR (play) File: %s not found.\n' % path
        return '+OK (play) Playing file %s\n' % path
    if command == 'say':
        return '-ERR (say) Error!\nsay <text>'
    if command == 'saymember':
        return '-ERR (saymember) Error!\nsaymember <id> <text>'
    if command == 'moh':
        what = rest[0] if rest else ''
        if not what:
            return '-ERR invalid moh param\n'
        if what == 'reset':
            room.tmp_moh_sound = None
        elif what not in ('on', 'off', 'toggle'):
            room.tmp_moh_sound = what
        return '+OK moh\n'
    if command == 'stop':
        room.files.clear()
        for member in room.members:
            member.files.clear()
        return '+OK Stopped 0 files\n'
    if command in ('recording', 'record', 'norecord'):
        if command == 'record':
            verb, target = 'start', rest[0] if rest else ''
        elif command == 'norecord':
            verb, target = 'stop', rest[0] if rest else ''
        else:
            verb, target = (rest + ['', ''])[:2]
        if verb == 'start' and target:
            room.start_recording(target)
            return '+OK Record file %s\n' % target
        if verb == 'stop' and target:
            paths = list(room.recordings) if target == 'all' else [target]
            out = []
            for path in paths:
                if room.stop_recording(path):
                    out.append('Stopped recording file %s\n' % path)
            # FreeSWITCH 1.10.12 counts 0 whatever it stopped
            return ''.join(out) + '+OK Stopped recording 0 files\n'
        return '-ERR (%s) Error!\n' % command
    return '-ERR Conference command \'%s\' not found.\n' % command
