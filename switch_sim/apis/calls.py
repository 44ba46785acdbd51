"""The API commands that place calls: originate (a channel to an endpoint, running an extension or
an `&app(args)`), and the simulator's own `sim_call <json>` (a scripted caller calls in, `+OK <uuid>`)
and `sim_dtmf <uuid> <digits>` (the caller presses keys).

While inbound calls are paused (`fsctl pause inbound`), a loopback originate waits out its
originate_timeout and fails with NO_ANSWER, its -a leg left DOWN meanwhile (`_stuck_loopback`).

A loopback originate (callfork's REST calls) is a pair of channels, as mod_loopback makes it
(switch_sim.loopback.originate_pair): the reply waits for the far side to answer or give early
media, and fails with its cause (busy, NO_ANSWER at originate_timeout, ORIGINATOR_CANCEL when the
originated channel is killed meanwhile); tests/fixtures/fs-captures/originate-loopback.json.

Approximated: another endpoint answers at once unless it is `error/<CAUSE>` (then
`-ERR <CAUSE>`); an enterprise originate (`:_:` in the dial string) is refused with
`-ERR CHAN_NOT_IMPLEMENTED`, what FreeSWITCH answers when the split leaves a part it cannot dial.
Its arguments (10 slots) and variable blocks are read as FreeSWITCH reads them
(tests/fixtures/fs-captures/originate-vars.json), and the new channel's caller profile is the one
FreeSWITCH gives it, caller and callee id flipped (originate_profile, Channel.sort_cid;
tests/fixtures/fs-captures/originate-callerid.json).
"""
from __future__ import annotations

import json
import logging
import re
import uuid as uuid_mod

import gevent

from ..argsplit import create_brackets, separate_string
from ..caller import CallScript
from ..causes import normalize_cause
from .uuid_commands import uuid_api

# switch_ivr_originate's loop, with no caller session, yields 20 ms between looks at its legs
# (switch_yield(20000) in src/switch_ivr_originate.c of FreeSWITCH 1.10.12)
ORIGINATE_POLL_S = 0.02

log = logging.getLogger('switch_sim.apis')


def parse_originate_vars(text: str):
    """switch_ivr_originate's leading variable blocks: `<...>` blocks, then `{...}` blocks, each
    read by switch_event_create_brackets (argsplit.create_brackets: `\\,` keeps a comma in a value,
    quotes group and are dropped, a nested `{...}` is part of the value); `[...]` (per leg in
    FreeSWITCH, whose own comma rules are not modelled) is read the same way. A later name replaces
    an earlier one; an empty name sets nothing.
    -> (variables, the rest: the endpoint), or (None, text) when a block is not closed."""
    variables = {}
    text = text.lstrip(' ')
    for open_, close in (('<', '>'), ('{', '}'), ('[', ']')):
        if open_ == '[':
            text = text.lstrip(' ')
        while text.startswith(open_):
            parsed = create_brackets(text, open_, close)
            if parsed is None:
                return None, text
            block, text = parsed
            for name, value in block.items():
                variables.pop(name, None)
                if name:
                    variables[name] = value
    return variables, text.lstrip(' ')


def sanitize_number(number: str) -> str:
    """switch_sanitize_number (switch_utils.h): a text with '/', ':' or '@' is cut at its first '@',
    then what follows its last '/' and then its last ':' is kept ("9999/default" -> "default")."""
    if not any(c in number for c in '/:@'):
        return number
    number = number.split('@', 1)[0]
    return number.rsplit('/', 1)[-1].rsplit(':', 1)[-1]


def originate_profile(endpoint: str, variables: dict) -> dict:
    """The caller profile switch_ivr_originate gives a channel it creates (no calling session):
    the caller id asked for (origination_caller_id_name/number, else "" and "0000000000"; it stays
    the orig caller id, and the ANI unless origination_ani), the destination (the dial string after
    "tech/", "service" if none), and a callee id of its own: "Outbound Call" and
    switch_sanitize_number(destination). Channel.sort_cid flips caller and callee id once the
    channel is given something to run (tests/fixtures/fs-captures/originate-callerid.json).
    mod_loopback reads its destination as `number[/context[/dialplan]]`; other endpoints are
    approximated (a SIP-like channel named after the dial string's last part).
    -> keyword arguments of Simulator.create_channel."""
    cid_name = variables.get('origination_caller_id_name') or ''
    cid_num = variables.get('origination_caller_id_number') or '0000000000'
    tech, _, chan_data = endpoint.partition('/')
    destination = chan_data or 'service'
    profile = {'orig_caller_name': cid_name, 'orig_caller_number': cid_num,
               'ani': variables.get('origination_ani') or cid_num,
               'callee_name': 'Outbound Call', 'callee_number': sanitize_number(destination)}
    if tech == 'loopback':
        number, _, rest = destination.partition('/')
        context, _, dialplan = rest.partition('/')
        profile.update(source='mod_loopback', dialplan_name=dialplan or 'xml')
        return dict(caller_number=cid_num, caller_name=cid_name, destination=number, context=context or 'default',
                    name='loopback/%s-a' % number, profile=profile)
    number = endpoint.rstrip('/').split('/')[-1].split('@')[0]
    return dict(caller_number=cid_num, caller_name=cid_name, destination=number, context='default',
                name='sofia/sim/%s' % endpoint.split('/')[-1], profile=profile)


def api_originate(sim, args):
    parts = separate_string(args, max_parts=10)
    if len(parts) < 2:
        return ('-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] '
                '[<cid_name>] [<cid_num>] [<timeout_sec>]\n')
    url, target = parts[0], parts[1]
    if ':_:' in url:           # FreeSWITCH splits the whole dial string there (enterprise originate)
        return '-ERR CHAN_NOT_IMPLEMENTED\n'
    variables, endpoint = parse_originate_vars(url)
    if variables is None:                       # FreeSWITCH: "Parse Error!"
        return '-ERR DESTINATION_OUT_OF_ORDER\n'
    if endpoint.startswith('error/'):
        return '-ERR %s\n' % normalize_cause(endpoint[len('error/'):])
    if not endpoint:
        return '-ERR INVALID_URL\n'
    if target.startswith('&'):
        m = re.match(r'^&([\w-]+)(?:\((.*)\))?$', target, re.S)
        if not m:
            return '-ERR INVALID_URL\n'
        dialplan = [(m.group(1), m.group(2) or '')]
    elif len(parts) > 2 and parts[2] == 'inline':
        from ..loopback import inline_apps
        dialplan = inline_apps(target)
    else:
        dialplan = None
    # the cid_name / cid_num arguments ('undef' = none) become the origination_caller_id_* variables
    # unless the block set those; the channel keeps them
    for index, name in ((4, 'origination_caller_id_name'), (5, 'origination_caller_id_number')):
        if len(parts) > index and parts[index].lower() != 'undef' and name not in variables:
            variables[name] = parts[index]
    uuid = variables.get('origination_uuid') or str(uuid_mod.uuid4())
    if sim.get_channel(uuid) is not None:
        return '-ERR DESTINATION_OUT_OF_ORDER\n'
    if sim.paused_inbound and endpoint.startswith('loopback/'):
        return _stuck_loopback(sim, uuid, endpoint, variables)
    audio = variables.pop('sim_audio', None)
    profile = originate_profile(endpoint, variables)
    if endpoint.startswith('loopback/'):
        return _originate_loopback(sim, uuid, endpoint, variables, profile, dialplan, target, audio)
    try:
        ch = sim.create_channel(direction='outbound', uuid=uuid, variables=variables,
                                dialplan=dialplan if dialplan is not None else sim.route(target),
                                audio=audio, answer_first=True, **profile)
    except Exception as exc:
        log.error('originate failed: %s', exc)
        return '-ERR DESTINATION_OUT_OF_ORDER\n'
    return '+OK %s\n' % ch.uuid


def _originate_timeout(variables: dict) -> float:
    try:
        return float(variables.get('originate_timeout') or 60)
    except ValueError:
        return 60.0


def _originate_loopback(sim, uuid, endpoint, variables, profile, dialplan, target, audio) -> str:
    """A mod_loopback pair (switch_sim.loopback.originate_pair): the reply waits until the -b leg
    gives early media or answers (+OK), hangs up (-ERR <its cause>), or originate_timeout (60 s by
    default) passes (-ERR NO_ANSWER, which reaches the -b leg too); a uuid_kill of the originated
    channel meanwhile is the failure's cause (tests/fixtures/fs-captures/originate-loopback.json).
    switch_ivr_originate looks at its legs every ORIGINATE_POLL_S: a far side that answers and hangs
    up before the next look (an inline dialplan ending right after `answer`) fails it with its cause,
    and the originated channel runs its app only once the originate decided (`decided`)."""
    from ..caller import CallerModel
    from ..loopback import originate_pair
    far = None
    if audio:
        far = CallerModel(CallScript(to=profile['destination'], from_=profile['caller_number']), sim.media.load(audio))
    try:
        leg = originate_pair(sim, uuid=uuid, data=endpoint[len('loopback/'):], variables=variables,
                             dialplan=dialplan if dialplan is not None else sim.route(target), profile=profile,
                             far=far)
    except Exception as exc:
        log.error('originate failed: %s', exc)
        return '-ERR DESTINATION_OUT_OF_ORDER\n'
    try:
        if not leg.settled.wait(_originate_timeout(variables)):
            leg.hangup('NO_ANSWER')
        elif not leg.hungup:
            gevent.sleep(ORIGINATE_POLL_S)   # the poll that sees the answer; a far side gone by then fails it
    finally:
        leg.decided.set()
    if leg.hungup:
        return '-ERR %s\n' % leg.hangup_cause
    return '+OK %s\n' % leg.uuid


def _stuck_loopback(sim, uuid: str, endpoint: str, variables: dict) -> str:
    """A loopback originate while inbound calls are paused: mod_loopback cannot create the inbound
    -b leg and leaves the -a leg in CS_INIT, DOWN, until the originate gives up after
    originate_timeout (60 s by default) with NO_ANSWER and the leg goes
    (tests/fixtures/fs-captures/pause-inbound.json). A uuid_kill meanwhile ends the wait."""
    from ..channel import Channel
    profile = originate_profile(endpoint, variables)
    ch = Channel(sim, uuid=uuid, direction='outbound', variables=variables, **profile)
    ch.running_state, ch.state_number = 'CS_INIT', 1
    sim.register_channel(ch)
    ch.gone.wait(_originate_timeout(variables))
    if not ch.hungup:
        ch.hangup('NO_ANSWER')
    return '-ERR %s\n' % ch.hangup_cause


def api_sim_call(sim, args):
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


@uuid_api('-USAGE: <uuid> <digits>\n', need=2)
def api_sim_dtmf(sim, ch, parts):
    for d in parts[1]:
        ch.queue_dtmf(d)
    return '+OK\n'
