"""The dialplan apps a callee answers a call with, besides answer/pre_answer/ring_ready (apps/control):
`respond` (a SIP response) and `gentones` (a teletone script), used by the loopback callees of the
bridge captures (tests/fixtures/fs-captures/bridge.json).

`respond <code> [reason]`: on a loopback channel nothing (mod_loopback ignores the indication, as
captured: the inline dialplan then ends and the pair hangs up with NORMAL_CLEARING); on other
channels 180 is ring_ready, 183 pre_answer, 200 answer, and a code of 300 or more hangs the call
up with the cause mod_sofia maps it to (approximated: the usual codes; others NORMAL_CLEARING).
`gentones <script>[|<loops>]`: plays the tones of `%(on,off,f1[,f2..])` segments (switch_sim.media's
tone_stream) until done, hangup or a break.
"""
from __future__ import annotations

from ..media import MediaError, open_source
from .playback import play_source
from .registry import AppError, app

SIP_CAUSES = {'404': 'UNALLOCATED_NUMBER', '408': 'RECOVERY_ON_TIMER_EXPIRE', '480': 'NO_USER_RESPONSE',
              '486': 'USER_BUSY', '487': 'ORIGINATOR_CANCEL', '488': 'INCOMPATIBLE_DESTINATION',
              '500': 'NORMAL_TEMPORARY_FAILURE', '503': 'NORMAL_TEMPORARY_FAILURE',
              '603': 'CALL_REJECTED', '600': 'USER_BUSY', '403': 'CALL_REJECTED', '410': 'NUMBER_CHANGED'}


@app('respond')
def app_respond(ch, data):
    code = data.strip().split(' ', 1)[0]
    if not code:
        raise AppError('respond: no code')
    if ch.name.startswith('loopback/'):
        return
    if code == '180':
        ch.ring_ready()
    elif code == '183':
        ch.pre_answer()
    elif code == '200':
        ch.answer()
    elif code.isdigit() and int(code) >= 300 and not ch.answered:
        ch.hangup(SIP_CAUSES.get(code, 'NORMAL_CLEARING'))


@app('gentones')
def app_gentones(ch, data):
    script, _, loops = data.partition('|')
    spec = script.strip()
    if loops.strip().lstrip('-').isdigit():
        spec += ';L=%d' % int(loops)
    try:
        src = open_source('tone_stream://' + spec, ch.sim.media, ch.variables)
    except (MediaError, ValueError) as exc:
        raise AppError('gentones %s: %s' % (data, exc))
    play_source(ch, src)
