"""What a dial is made of, and the FreeSWITCH dial string it becomes: `DialTarget` (a number or a
sip: URI to ring), `DialPlan` (the targets and everything a Vobiz <Dial> or an SWML connect asks
for), `Leg` (one dialled channel, as the Dialer follows it), `DialResult`, and `dial_string()`.

The dial string is one `bridge` argument: a global block `{...}` read for every leg, then each
leg as `[vars]endpoint`, legs that ring at once separated by `,`, serial groups by `|`. Every
value callfork puts in it is checked (`leg_value`): FreeSWITCH's splitting gives , ' " [ ] { } |
and ^ a meaning, and `$` would be expanded.
"""
from __future__ import annotations

import re
import time
import uuid as uuidlib
from dataclasses import dataclass, field

from esl_app import LEG_VARIABLE

# what a value in a dial string's [...] may hold: no separators, quotes, brackets or ${...}
_SAFE_VALUE = re.compile(r"[^,'\"\[\]{}|^$\\\x00-\x1f]*")


class DialError(ValueError):
    """A dial that cannot be placed as asked (a value FreeSWITCH's dial string cannot carry)."""


@dataclass
class DialTarget:
    """One leg to ring: a phone number or a sip: URI."""
    kind: str                       # "number" or "sip"
    address: str
    send_digits: str | None = None
    send_on_preanswer: bool = False
    sip_headers: dict = field(default_factory=dict)
    timeout_s: int | None = None    # its own ring timeout (default: the plan's)
    caller_id: str | None = None    # its own caller id (default: the plan's)
    group: int = 0                  # serial dialling: groups are tried in order, a group's legs at once
    variables: dict = field(default_factory=dict)   # more of the leg's own channel variables


@dataclass
class DialPlan:
    targets: list
    caller_id: str | None = None
    caller_name: str | None = None
    timeout_s: int = 120
    time_limit_s: int = 14400
    hangup_on_star: bool = False
    ringback: bool = True           # a ringback tone to an answered caller while the legs ring
    ringback_file: str | None = None  # what the caller hears while the legs ring, instead of the tone
    sip_headers: dict = field(default_factory=dict)
    header_prefix: str = "X-VH-"      # put before each SIP header name (Vobiz's X-VH-; SWML: none)
    confirm_file: str | None = None   # played to a callee when it answers, before it is connected
    confirm_key: str | None = None    # the key the callee must press to be connected
    confirm_timeout_s: int | None = None
    digits_match: tuple = ()          # patterns the caller's digits are matched against while bridged
    digits_match_b_leg: tuple = ()    # the same for the callee's digits


@dataclass
class Leg:
    position: int                   # 1-based, in the order of the targets
    target: DialTarget
    uuid: str
    from_number: str
    started: float
    rang: bool = False
    answered_at: float | None = None
    connected: bool = False
    hangup: object = None           # its CHANNEL_HANGUP_COMPLETE event
    hangup_cause: str = ""
    ended: float | None = None      # time.monotonic() when its hangup reached us
    ended_by_caller: bool = False   # it ended because the caller hung up
    digits_matched: str = ""        # the pattern a 'digits' report is about
    digits_by: str = ""             # who pressed them: aleg | bleg
    digits_sent: bool = False
    ended_by_request: bool = False  # callfork ended it: a REST transfer of the caller
    seen: bool = False              # an event of it arrived (it exists)
    announced: bool = False         # on_state('created') was called for it

    @property
    def to(self) -> str:
        return self.target.address

    @property
    def done(self) -> bool:
        return self.hangup is not None

    @property
    def duration_s(self) -> int:
        """Whole seconds from its answer to its hangup (0 when it never answered)."""
        if self.answered_at is None or self.hangup is None:
            return 0
        ended = self.hangup.get("Event-Date-Timestamp")
        end_s = int(ended) / 1e6 if ended and ended.isdigit() else self.answered_at
        return max(0, round(end_s - self.answered_at))


@dataclass
class DialResult:
    status: str                     # completed | busy | failed | cancel | timeout | no-answer
    rang: bool
    hangup_cause: str
    bridged_leg: Leg | None
    legs: list
    caller_gone: bool


def leg_value(name: str, value) -> str:
    text = str(value)
    if not _SAFE_VALUE.fullmatch(text):
        raise DialError(f"{name} {text!r} cannot be dialled: it may not contain , ' \" [ ] {{ }} | ^ $ \\ "
                        "or control characters")
    return text


def endpoint_for(target: DialTarget, freeswitch_config) -> tuple[dict, str]:
    """(variables the configured dial string template carries in a leading {...}, the endpoint)."""
    if target.kind == "sip":
        text = freeswitch_config.sip_dialstring.replace("{uri}", target.address)
    else:
        text = freeswitch_config.originate_dialstring.replace("{to}", target.address)
    variables = {}
    match = re.match(r"^\{([^{}]*)\}(.*)$", text)
    if match:
        for pair in filter(None, match.group(1).split(",")):
            name, _, value = pair.partition("=")
            variables[name.strip()] = value
        text = match.group(2)
    return variables, text


def is_loopback(target: DialTarget, freeswitch_config) -> bool:
    """Does the target's leg go through mod_loopback (whose second leg is an inbound channel)?"""
    return endpoint_for(target, freeswitch_config)[1].lstrip().startswith("loopback/")


def leg_timeout(plan: DialPlan, leg: Leg) -> int:
    return int(leg.target.timeout_s or plan.timeout_s)


def make_legs(plan: DialPlan, from_number: str) -> list:
    """One Leg per target, each with the UUID FreeSWITCH will give its channel."""
    legs = []
    for position, target in enumerate(plan.targets, 1):
        caller_id = target.caller_id or plan.caller_id
        legs.append(Leg(position, target, str(uuidlib.uuid4()), caller_id or from_number, time.monotonic()))
    return legs


def dial_string(plan: DialPlan, legs: list, call_uuid: str, freeswitch_config) -> str:
    parts = []
    for leg in legs:
        target, position = leg.target, leg.position
        caller_id = target.caller_id or plan.caller_id
        template_vars, endpoint = endpoint_for(target, freeswitch_config)
        variables = dict(template_vars)
        variables.update({"origination_uuid": leg.uuid, LEG_VARIABLE: call_uuid,
                          "callfork_dial_position": str(position),
                          "leg_timeout": str(leg_timeout(plan, leg))})
        for name, value in target.variables.items():
            variables[name] = leg_value(name, value)
        if caller_id:
            variables["origination_caller_id_number"] = leg_value("callerId", caller_id)
        if plan.caller_name:
            variables["origination_caller_id_name"] = leg_value("callerName", plan.caller_name)
        headers = dict(plan.sip_headers)
        headers.update(target.sip_headers)
        for name, value in headers.items():
            variables[f"sip_h_{plan.header_prefix}{leg_value('sipHeaders', name)}"] = \
                leg_value("sipHeaders", value)
        on_answer = [f"sched_hangup +{int(plan.time_limit_s)} ALLOTTED_TIMEOUT"]
        if plan.confirm_file and not plan.confirm_key:
            on_answer.append(f"playback {leg_value('confirmSound', plan.confirm_file)}")
        for index, app in enumerate(on_answer, 1):
            variables[f"execute_on_answer_{index}"] = f"'{app}'"
        block = ",".join(f"{name}={value}" for name, value in variables.items())
        parts.append((target.group, f"[{block}]{endpoint}"))
    groups = sorted({group for group, _ in parts})
    # the global block, read by switch_ivr_originate for every leg: FreeSWITCH's own cap on
    # ringing (60 s unless told) would cut a longer timeout short, so it is raised past the legs'
    # own: it fires at `elapsed >= cap` in whole epoch seconds, a leg_timeout at `elapsed >
    # timeout`, and +2 keeps the cap from winning the same second; the confirm variables go here
    # because, given per leg ([...]), mod_loopback deletes them from its leg before the originate
    # looks (channel_outgoing_channel: switch_channel_del_variable_prefix "group_confirm_")
    global_vars = {"originate_timeout": str(max(leg_timeout(plan, leg) for leg in legs) + 2),
                   # a callee's early media must not count as its answer (FreeSWITCH would
                   # bridge it at once and stop its timeout): passed to the caller while it rings
                   # (one leg, no ringback file), or ignored under a ringback file
                   **({"ignore_early_media": "true"} if plan.ringback_file
                      else {"bridge_early_media": "true"}),
                   # an unanswered SIP leg offers only the caller's codec ("originator_codec") unless
                   # told to add its profile's (switch_core_media_prepare_codecs in
                   # https://github.com/signalwire/freeswitch/blob/v1.10.12/src/switch_core_media.c):
                   # a phone without it (a loopback caller's L16, a PCMA-only phone behind a PCMU
                   # carrier) refuses the call with 488; with it the leg offers the caller's codec
                   # first, then the profile's, and FreeSWITCH transcodes
                   "media_mix_inbound_outbound_codecs": "true"}
    if plan.confirm_key:
        global_vars["group_confirm_key"] = leg_value("confirmKey", plan.confirm_key)
        if plan.confirm_file:
            global_vars["group_confirm_file"] = leg_value("confirmSound", plan.confirm_file)
        if plan.confirm_timeout_s:
            global_vars["group_confirm_timeout"] = str(int(plan.confirm_timeout_s))
    head = "{%s}" % ",".join(f"{k}={v}" for k, v in global_vars.items())
    return head + "|".join(",".join(text for group, text in parts if group == g) for g in groups)
