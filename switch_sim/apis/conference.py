"""The `conference` API of the simulated switch (mod_conference's conference_api.c), replying as
FreeSWITCH 1.10.12 does (tests/fixtures/fs-captures/conference-mod.json):

    conference list [count]                      every room: "+OK Conference <name> (<n> members rate: 8000 flags: ...)" and its members
    conference <room> json_list                  the room and its members as JSON
    conference <room> stop                       stop the files playing
    conference <room> moh <file>|reset           the room's music on hold
    conference <room> list [count]               "<id>;<channel name>;<uuid>;<caller name>;<caller number>;<flags>;0;0;100", newest first
    conference <room> mute|unmute|deaf|undeaf|kick|hup <id>|all|last
    conference <room> play <file>|say:<text> [<id>]
    conference <room> say [{tts_engine=E,tts_voice=V}]<text>
    conference <room> saymember <id> <text>     succeeds and speaks nothing (no tts-engine in the profile)
    conference <room> recording start|stop <path>|all,  record <path>,  norecord <path>|all

An unknown room is "-ERR Conference <room> not found", an unknown member "-ERR Non-Existant ID <id>".
`say` and `saymember` take the text after the first "say"/"saymember" of the whole command line,
room name included (conference_api.c: strstr), so a room named with "say" in it says the wrong
text; `play` splits its arguments as every API does. The profile has no tts-engine (as the stock
one): `say` speaks only with the engine and voice in braces in front of its text
(tests/fixtures/fs-captures/conference-speak.json). `play say:<text> <id>` crashes FreeSWITCH
1.10.12 (conference_api_sub_play reads the member's file node, which conference_member_say did not
make): the simulator stops.
"""
from __future__ import annotations

import json
import logging
import time

from ..argsplit import create_brackets, separate_string
from ..conference import registry

log = logging.getLogger('switch_sim.conference')

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


def _text_after(args: str, command: str) -> str:
    """What an ARGS_AS_ONE command gets: the line after the first `command` in it, blanks skipped."""
    at = args.find(command)
    text = args[at + len(command):] if at >= 0 else args
    return text.lstrip(' \t')


def _speech(text: str) -> tuple[str | None, str | None, str]:
    """conference_say's reading of its text: a leading `{...}` block (tts_engine, tts_voice), then
    `#voice#`; the profile gives no engine nor voice."""
    engine = voice = None
    if text.startswith('{'):
        parsed = create_brackets(text)
        if parsed is not None:
            params, text = parsed
            engine, voice = params.get('tts_engine'), params.get('tts_voice')
    if text.startswith('#') and '#' in text[1:]:
        voice, _, text = text[1:].partition('#')
    return engine, voice, text


def _say(room, text: str) -> bool:
    if not text or not room.members:
        return False
    engine, voice, words = _speech(text)
    return bool(engine) and bool(voice) and room.say(engine, voice, words)


def _member_by_str(room, text: str):
    if text == 'last':
        newest = room.newest_first()
        return newest[0] if newest else None
    try:
        return room.find(int(text))
    except ValueError:
        return None


def _play(sim, room, args: str) -> str:
    argv = separate_string(args, max_parts=25)
    is_async = (len(argv) == 4 and argv[3].lower() == 'async') or (len(argv) == 5 and argv[4].lower() == 'async')
    argc = len(argv) - (1 if is_async else 0)
    if argc < 3:
        return '-ERR (play) Error!\n'
    path = argv[2]
    speech = path[:4].lower() == 'say:'
    if argc == 3:
        if speech and not is_async:
            if not _say(room, path[4:]):
                return '-ERR (play) File: %s not found.\n' % path
            room.fire('play-file', [('File', path), ('Async', 'false')])
            return '+OK (play) Playing file %s\n' % path
        if not room.play(path):
            return '-ERR (play) File: %s not found.\n' % path
        return '+OK (play) Playing file %s\n' % path
    member = _member_by_str(room, argv[3])
    if member is None:
        return '-ERR (play) Member: %s not found.\n' % argv[3]
    if speech:
        log.critical('conference %s play %s %s: FreeSWITCH 1.10.12 crashes here (the member has no file '
                     'node); the simulator stops', room.name, path, argv[3])
        sim.stop()          # closes this connection too: no reply, as from the crashed switch
        return ''
    if not room.play(path, member):
        return '-ERR (play) File: %s not found.\n' % path
    return '+OK (play) Playing file %s to member %d\n' % (path, member.id)


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
        return _play(sim, room, args)
    if command == 'say':
        text = _text_after(args, 'say')
        if not text:
            return '-ERR (say) Error! No text.\nsay <text>'
        if not _say(room, text):
            return '-ERR (say) Error!\nsay <text>'
        room.fire('speak-text', [('Text', text)])
        return '+OK (say) OK\n'
    if command == 'saymember':
        usage = 'saymember <member_id> <text>'
        member_id, _, text = _text_after(args, 'saymember').partition(' ')
        if not member_id or not text:
            return '-ERR (saymember) No Text!\n' + usage
        member = _member_by_str(room, member_id)
        if member is None:
            return '-ERR (saymember) Unknown Member %s!\n%s' % (member_id, usage)
        # conference_member_say returns success at once when the profile has no tts-engine
        room.fire_member(member, 'speak-text-member', [('Text', text)])
        return '+OK (saymember) OK\n'
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
            if not out and target != 'all':
                out.append("-ERR non-existant recording '%s'\n" % target)
            # FreeSWITCH 1.10.12 counts 0 whatever it stopped
            return ''.join(out) + '+OK Stopped recording 0 files\n'
        return '-ERR (%s) Error!\n' % command
    return '-ERR Conference command \'%s\' not found.\n' % command
