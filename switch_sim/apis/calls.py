"""The API commands that place calls: originate (a channel to an endpoint, running an extension or
an `&app(args)`), and the simulator's own `sim_call <json>` (a scripted caller calls in, `+OK <uuid>`)
and `sim_dtmf <uuid> <digits>` (the caller presses keys).

Approximated: `originate` answers at once unless the endpoint is `error/<CAUSE>` (then
`-ERR <CAUSE>`).
"""
from __future__ import annotations

import json
import logging
import re
import uuid as uuid_mod

from ..argsplit import separate_string
from ..caller import CallScript
from ..causes import normalize_cause
from .uuid_commands import uuid_api

log = logging.getLogger('switch_sim.apis')


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
    parts = separate_string(args, max_parts=10)
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
