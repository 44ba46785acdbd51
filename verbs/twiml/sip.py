"""TwiML <Sip> (https://www.twilio.com/docs/voice/twiml/sip): a sip: URI <Dial> rings through
`[freeswitch] sip_dialstring` (verbs/dial_plan.py), with its leg's statusCallback like <Number>'s
(verbs/twiml/number.py), and what the Dial's action gets about a SIP leg (`sip_action_params`).

Custom SIP headers are given as the URI's headers part, `sip:agent@host?X-Custom=value&X-Other=2`
(percent-escapes decoded): each goes on the INVITE as a header (the leg's `sip_h_<name>` variable);
the URI dialled is what comes before the `?`. Twilio takes `X-` names (and a few standard ones
callfork does not pass on: User-to-User, Remote-Party-ID, P-Preferred-Identity, P-Called-Party-ID);
any other name is refused when the document is parsed.

`username`/`password`: the digest credentials the leg answers a 401/407 challenge with (the leg's
`sip_auth_username`/`sip_auth_password`, which mod_sofia reads when the INVITE is challenged).

The action URL of a Dial whose connected or last-tried leg is a <Sip> also gets DialSipCallId (the
INVITE's Call-ID: the leg's `sip_call_id`), DialSipResponseCode (the final response to the INVITE:
200 when answered, else the leg's `sip_term_status`, else the one its hangup cause stands for) and
DialSipHeader_<name> for each X- header of that final response (the leg's `sip_rh_X-...`).

Refused when parsed, as on <Number>: `url` (the "whisper" document run on the callee's leg before it
is connected: callfork's Dial cannot run a document on the dialled leg).
"""
import re
from urllib.parse import unquote

from ..base import Attr, Text
from ..dial_plan import DialError, DialTarget, leg_value
from .number import LEG_ATTRIBUTES, LegNoun

SIP_URI = re.compile(r"sips?:[^\s@,'\"\[\]{}|^$\\]+(@[^\s@,'\"\[\]{}|^$\\]+)?", re.I)
HEADER_NAME = re.compile(r"X-[A-Za-z0-9!%*_.+`'~-]+", re.I)       # an X- token (RFC 3261 25.1)
STANDARD_HEADERS = ("user-to-user", "remote-party-id", "p-preferred-identity", "p-called-party-id")
# the final response a leg's hangup cause stands for when FreeSWITCH set no sip_term_status: a leg
# it CANCELs itself (its leg_timeout: ALLOTTED_TIMEOUT; the caller gone; a lost race) has none, the
# callee's 487 coming after the hangup (seen on FreeSWITCH 1.10.12; tests/test_scenario_twiml_sip.py);
# the others as sofia_glue_sip_cause_to_freeswitch maps responses to causes, read backwards
# (https://github.com/signalwire/freeswitch/blob/v1.10.12/src/mod/endpoints/mod_sofia/sofia_glue.c)
CAUSE_RESPONSE = {"USER_BUSY": "486", "NO_ANSWER": "487", "ALLOTTED_TIMEOUT": "487", "PROGRESS_TIMEOUT": "487",
                  "ORIGINATOR_CANCEL": "487", "LOSE_RACE": "487",
                  "CALL_REJECTED": "603", "NO_USER_RESPONSE": "408", "RECOVERY_ON_TIMER_EXPIRE": "408",
                  "UNALLOCATED_NUMBER": "404", "NO_ROUTE_DESTINATION": "404", "USER_NOT_REGISTERED": "404",
                  "INCOMPATIBLE_DESTINATION": "488", "NORMAL_TEMPORARY_FAILURE": "503",
                  "DESTINATION_OUT_OF_ORDER": "502", "SERVICE_UNAVAILABLE": "503"}


def split_uri(text: str) -> tuple[str, list]:
    """(the URI without its headers part, [(header name, decoded value)] in their order)."""
    uri, _, query = text.strip().partition("?")
    headers = []
    for pair in filter(None, query.split("&")):
        name, _, value = pair.partition("=")
        headers.append((unquote(name), unquote(value)))
    return uri, headers


class Sip(LegNoun):
    name = "Sip"
    KIND = "sip"
    ATTRIBUTES = LEG_ATTRIBUTES + (
        Attr("username", "username", Text(), None),
        Attr("password", "password", Text(), None),
    )

    def check_address(self):
        errors = []
        if self.text and not SIP_URI.fullmatch(self.text.strip()):
            errors.append(f'"{self.text}" is not a SIP URI (sip:user@host)')
            return errors
        for name, value in split_uri(self.text or "")[1]:
            if name.lower() in STANDARD_HEADERS:
                errors.append(f'SIP header "{name}" is not supported by callfork: only X- headers are sent')
            elif not HEADER_NAME.fullmatch(name):
                errors.append(f'"{name}" is not a custom SIP header name: custom headers start with X-')
            else:
                errors.extend(_unsafe(f"SIP header {name}", value))
        for attr in ("username", "password"):     # named, not shown: a credential stays out of the logs
            if getattr(self, attr, None) and _unsafe(attr, getattr(self, attr)):
                errors.append(f"{attr} cannot be dialled: it may not contain , ' \" [ ] {{ }} | ^ $ \\ "
                              "or control characters")
        return errors

    @property
    def address(self) -> str:
        return split_uri(self.text)[0]

    def target(self) -> DialTarget:
        target = super().target()
        target.sip_headers = dict(split_uri(self.text)[1])
        if self.username:
            target.variables["sip_auth_username"] = self.username
        if self.password:
            target.variables["sip_auth_password"] = self.password
        return target


def _unsafe(what: str, value: str) -> list:
    try:
        leg_value(what, value)
    except DialError as exc:
        return [str(exc)]
    return []


def sip_action_params(leg) -> dict:
    """DialSipCallId, DialSipResponseCode and DialSipHeader_<name> of a dialled <Sip> leg."""
    headers = leg.hangup.headers if leg.hangup is not None else {}    # its CHANNEL_HANGUP_COMPLETE
    variables = {name[len("variable_"):]: value for name, value in headers.items() if name.startswith("variable_")}
    if leg.answered_at is not None:
        code = "200"
    else:
        code = variables.get("sip_term_status") or CAUSE_RESPONSE.get(leg.hangup_cause, "")
    params = {"DialSipCallId": variables.get("sip_call_id", ""), "DialSipResponseCode": code}
    for name, value in variables.items():
        if name.lower().startswith("sip_rh_x-"):
            params[f"DialSipHeader_{name[len('sip_rh_'):]}"] = value
    return params
