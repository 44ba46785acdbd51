"""The `conference` dialplan app of the simulated switch (mod_conference's conference_function):
`<room>[@<profile>][+<pin>][+flags{f1|f2}]` joins the channel to the room (switch_sim/conference.py
owns rooms, members, mixing and events) and returns when the member leaves: kicked, hung up by the
API, the room destroyed, or the channel hung up.

The member's flags are those of `+flags{...}` and of the channel's `conference_member_flags`
(mute, deaf, moderator, endconf, mintwo, dist-dtmf, skip-dtmf; others are accepted and ignored).
The channel is answered first. While it is a member the channel reads into the room and writes
what the room mixes for it; messages queued by its socket run nested, digits are dequeued (their
DTMF event fires, as with `conference_controls=none`; with `dist-dtmf` they go to the other
members: switch_sim/conference_dtmf.py) and CF_BREAK is ignored, as in mod_conference's loop.
"""
from __future__ import annotations

import logging
import re

from ..conference import parse_flags, registry
from ..conference_dtmf import member_digits
from .registry import AppError, app

log = logging.getLogger('switch_sim.apps')

_ARG = re.compile(r'^(?P<room>[^@+]+)(?:@(?P<profile>[^+]+))?(?P<rest>(?:\+.*)?)$', re.S)


def parse_target(data: str):
    """-> (room, profile, flags) of the app's argument; AppError when there is no room."""
    m = _ARG.match(data.strip())
    if not m:
        raise AppError('conference: no room name in %r' % data)
    flags = set()
    for part in (m.group('rest') or '').split('+'):
        if part.startswith('flags{') and part.endswith('}'):
            flags |= parse_flags(part[len('flags{'):-1])
    return m.group('room').strip(), (m.group('profile') or 'default').strip(), flags


@app('conference')
def app_conference(ch, data):
    room_name, profile, flags = parse_target(data)
    flags |= parse_flags(ch.get_variable('conference_member_flags'))
    if not ch.answered:
        ch.answer()
        ch.wait_frame()
    if ch.hungup:
        return
    rooms = registry(ch.sim)
    room = rooms.get_or_create(room_name, profile, ch)
    if room.full:
        log.info('[%s] Conference %s is full.', ch.uuid, room_name)
        return
    ch.set_variable('conference_name', room_name)
    member = room.add(ch, flags)
    ch.read_taps.append(member.on_read)
    ch.write_source = member
    try:
        while not ch.hungup and member.left is None and ch.transfer_pending() is False:
            if not ch.wait_frame():
                break
            ch.service_messages()
            ch.take_break()
            member_digits(member)
            ch.write_source = member
    finally:
        if member.on_read in ch.read_taps:
            ch.read_taps.remove(member.on_read)
        if ch.write_source is member:
            ch.write_source = None
        room.remove(member, member.left or 'hangup')
