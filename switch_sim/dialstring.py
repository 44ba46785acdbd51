"""The dial string of `bridge` as switch_ivr_originate reads it (v1.10.12): leading `<...>` and
`{...}` blocks of variables for every leg, then `|`-separated failover groups, each a
`,`-separated list of legs rung in parallel, each leg `[vars]...endpoint`.

How the text is cut, as the C code does it: the `{}`/`<>` blocks with switch_event_create_brackets
(argsplit.create_brackets); the rest split on `|` with switch_separate_string (quotes group and are
dropped, a backslash escapes); inside a `[...]` block a comma not after a backslash becomes the
block's own separator (so it does not split legs), then the group is split on `,` (so `\\,`
outside a block keeps a comma in an endpoint, e.g. `loopback/m:^:gentones:%(500\\,0\\,800)/...`);
each leg's `[...]` blocks are read with that separator. A later name replaces an earlier one; a
leg's `[...]` variables override the `{...}` ones.

Approximated: `:_:` (enterprise originate) and `^^X` inside `[...]` are not modelled: parse()
raises DialStringError for `:_:`.
"""
from __future__ import annotations

import dataclasses

from .argsplit import create_brackets, find_end_paren, separate_string

LEG_SEP = '\x01'        # FreeSWITCH's UNQUOTED_ESC_COMMA: a comma inside a leg's [...] block


class DialStringError(ValueError):
    """The dial string cannot be read (FreeSWITCH: "Parse Error!", the originate fails)."""


@dataclasses.dataclass
class Leg:
    endpoint: str               # e.g. loopback/9998/default, error/user_busy, sofia/gateway/gw/1555...
    variables: dict             # the {...} variables, then the leg's own [...] ones

    @property
    def tech(self) -> str:
        return self.endpoint.split('/', 1)[0].lower()

    @property
    def data(self) -> str:
        return self.endpoint.split('/', 1)[1] if '/' in self.endpoint else ''


@dataclasses.dataclass
class DialString:
    variables: dict             # the leading {...} / <...> blocks
    groups: list                # [[Leg, ...], ...]: tried in turn (failover), legs of one group in parallel


def _mark_block_commas(text: str) -> str:
    """switch_ivr_originate's pass over a group: a ',' inside a [...] block that is not after a
    backslash becomes LEG_SEP."""
    out = list(text)
    i = 0
    end = None
    while i < len(out):
        if end is None and out[i] == '[':
            found = find_end_paren(''.join(out[i:]), '[', ']')
            end = i + found if found is not None else len(out)
        if end is not None and i < end and out[i] == ',' and i > 0 and out[i - 1] != '\\':
            out[i] = LEG_SEP
        if end is not None and i == end:
            end = None
        i += 1
    return ''.join(out)


def _leg(text: str, global_vars: dict) -> Leg:
    text = text.lstrip(' ')
    variables = dict(global_vars)
    while text.startswith('['):
        parsed = create_brackets(text, '[', ']', delim=LEG_SEP)
        if parsed is None:
            raise DialStringError('Parse Error!')
        block, text = parsed
        for name, value in block.items():
            variables.pop(name, None)
            variables[name] = value.replace(LEG_SEP, ',')
    return Leg(text.strip(), variables)


def parse(text: str) -> DialString:
    if ':_:' in text:
        raise DialStringError('enterprise originate (:_:) is not modelled by the simulator')
    text = text.lstrip(' ')
    global_vars: dict = {}
    for open_, close in (('<', '>'), ('{', '}')):
        while text.startswith(open_):
            parsed = create_brackets(text, open_, close)
            if parsed is None:
                raise DialStringError('Parse Error!')
            block, text = parsed
            for name, value in block.items():
                global_vars.pop(name, None)
                global_vars[name] = value
            text = text.lstrip(' ')
    groups = []
    for group in separate_string(text, delim='|', max_parts=128):
        legs = [_leg(part, global_vars)
                for part in separate_string(_mark_block_commas(group), delim=',', max_parts=128) if part.strip()]
        if legs:
            groups.append(legs)
    if not groups:
        raise DialStringError('Nothing to do')
    return DialString(global_vars, groups)
