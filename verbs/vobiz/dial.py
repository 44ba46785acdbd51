"""<Dial> with <Number> and <User>: ring them at once, bridge the caller to the first that answers
(verbs/dialing.py), post the callbackUrl events of each leg and the DialAction result.

After the Dial: with `action`, the action URL gets DialStatus & co.; `redirect=true` runs the document
it returns, `redirect=false` posts it and goes on. Without a bridge the next elements run; after a
bridge they run only with `redirect=false`, otherwise the call ends when the bridge does (Vobiz).
"""
import re

from ..base import Attr, AttrError, Custom, Enum, Int, Text, check_url
from ..dial_recording import DialRecording
from ..dial_plan import DialPlan, DialTarget
from ..dialing import run_dial_verb
from ..sound_document import sound_file_string
from ..flow import EndCall, NextDocument
from ..hangup_codes import SOURCE_API, SOURCE_CALLEE, SOURCE_CALLER, SOURCE_VOBIZ, CODE_NAMES, CallEnd, from_fs_cause
from .element import BOOL, HTTP, HTTP_URL, METHOD, VobizVerb

SEND_DIGITS = Text(pattern=r"[0-9*#wW]*", pattern_desc="digits 0-9, *, # and w/W pauses")


def _sip_headers(raw, warnings):
    text = str(raw).strip()
    headers = {}
    for pair in [p for p in text.split(",") if p.strip()]:
        key, sep, value = pair.strip().partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9\-_]+", key):
            raise AttrError(f'"{pair}" is not key=value; the form is k=v,k2=v2')
        if key.endswith("X-VH") and len(key) > 4:
            key = key[:-4]
        headers[key] = value
    return headers


def _dial_music(raw, warnings):
    value = str(raw).strip()
    if value.lower() == "real":
        return "real"
    return check_url(value, HTTP)


def _digit_patterns(raw, warnings):
    patterns = tuple(p.strip() for p in str(raw).split(",") if p.strip())
    for pattern in patterns:
        if not re.fullmatch(r"[0-9*#]{1,20}", pattern):
            raise AttrError(f'"{pattern}" is not a digit pattern (0-9, * and #)')
    return patterns


SIP_HEADERS = Custom(_sip_headers, "k=v,k2=v2")
DIGIT_PATTERNS = Custom(_digit_patterns, "patterns like *1,#23")
# what a leg's caller name may hold (FreeSWITCH's dial string carries it in [...])
CALLER_NAME = Text(pattern=r"[^,'\"\[\]{}|^$\\\x00-\x1f]{0,64}",
                   pattern_desc="up to 64 characters without , ' \" [ ] { } | ^ $ \\")


class Number(VobizVerb):
    name = "Number"
    TEXT = "text"
    TEXT_REQUIRED = True
    ATTRIBUTES = (
        Attr("sendDigits", "send_digits", SEND_DIGITS, None),
        Attr("sendOnPreanswer", "send_on_preanswer", BOOL, False),
        Attr("sendDigitsMode", "send_digits_mode", Text(), None),
    )

    def check(self):
        if self.text and not re.fullmatch(r"\+?[0-9]{2,20}", self.text):
            return [f'"{self.text}" is not a phone number (digits with an optional leading +)']
        return []


class User(VobizVerb):
    name = "User"
    TEXT = "text"
    TEXT_REQUIRED = True
    ATTRIBUTES = (
        Attr("sendDigits", "send_digits", SEND_DIGITS, None),
        Attr("sendOnPreanswer", "send_on_preanswer", BOOL, False),
        Attr("sipHeaders", "sip_headers", SIP_HEADERS, {}),
    )

    def check(self):
        if self.text and not re.fullmatch(r"sips?:[^\s@]+@[^\s@]+|sips?:[^\s@]+", self.text):
            return [f'"{self.text}" is not a SIP URI (sip:user@host)']
        return []


class Dial(VobizVerb):
    name = "Dial"
    TEXT = "text"
    CHILDREN = ("Number", "User", "Record")
    ATTRIBUTES = (
        Attr("action", "action", HTTP_URL, None),
        Attr("method", "method", METHOD, "POST"),
        Attr("callbackUrl", "callback_url", HTTP_URL, None),
        Attr("callbackMethod", "callback_method", METHOD, "POST"),
        Attr("redirect", "redirect", BOOL, True),
        Attr("callerId", "caller_id", Text(pattern=r"\+?[0-9]{2,20}", pattern_desc="a phone number"), None),
        Attr("callerName", "caller_name", CALLER_NAME, None),
        Attr("timeout", "timeout", Int(minimum=1), 120),          # effective Vobiz default
        Attr("timeLimit", "time_limit", Int(minimum=1), 14400),
        Attr("hangupOnStar", "hangup_on_star", BOOL, False),
        Attr("dialMusic", "dial_music", Custom(_dial_music, "URL or real"), "real"),
        Attr("confirmSound", "confirm_sound", HTTP_URL, None),
        Attr("confirmKey", "confirm_key", Enum(*"0123456789#*"), None),
        Attr("confirmTimeout", "confirm_timeout", Int(minimum=1), None),
        Attr("digitsMatch", "digits_match", DIGIT_PATTERNS, ()),
        Attr("digitsMatchBLeg", "digits_match_b_leg", DIGIT_PATTERNS, ()),
        Attr("sipHeaders", "sip_headers", SIP_HEADERS, {}),
    )

    @property
    def targets(self):
        """The Number and User children (a plain-text number counts as a Number)."""
        found = [c for c in self.children if c.name in ("Number", "User")]
        if self.text:
            found.insert(0, Number(self.line, self.column, text=self.text))
        return found

    @property
    def record(self):
        return next((c for c in self.children if c.name == "Record"), None)

    def check(self):
        errors = []
        if not self.targets:
            errors.append("nothing to dial: add <Number> or <User> (or the number as text)")
        if self.text and not re.fullmatch(r"\+?[0-9]{2,20}", self.text):
            errors.append(f'"{self.text}" is not a phone number')
        if sum(1 for c in self.children if c.name == "Record") > 1:
            errors.append("at most one <Record> may be nested in <Dial>")
        return errors

    def plan(self, call):
        targets = []
        for child in self.targets:
            kind = "sip" if child.name == "User" else "number"
            targets.append(DialTarget(kind, child.text.strip(), child.send_digits, child.send_on_preanswer,
                                      dict(getattr(child, "sip_headers", {}) or {})))
        ringback_file = confirm_file = None
        if self.dial_music != "real":
            ringback_file = sound_file_string(call, self.dial_music, call.params(), f"<Dial> line {self.line} dialMusic")
        if self.confirm_sound:
            confirm_file = sound_file_string(call, self.confirm_sound, call.params(),
                                             f"<Dial> line {self.line} confirmSound")
        return DialPlan(targets, caller_id=self.caller_id, caller_name=self.caller_name, timeout_s=self.timeout,
                        time_limit_s=self.time_limit, hangup_on_star=self.hangup_on_star,
                        ringback=True, ringback_file=ringback_file, sip_headers=dict(self.sip_headers or {}),
                        confirm_file=confirm_file, confirm_key=self.confirm_key,
                        confirm_timeout_s=self.confirm_timeout, digits_match=tuple(self.digits_match or ()),
                        digits_match_b_leg=tuple(self.digits_match_b_leg or ()))

    def run(self, call):
        record_verb = self.record or call.dial_record
        call.dial_record = None
        recording = DialRecording(call, record_verb) if record_verb is not None else None

        result = run_dial_verb(call, f"<Dial> line {self.line}", self.plan(call),
                               lambda dialer, kind, leg: self._leg_event(call, dialer, kind, leg),
                               recording=recording)
        bridged = result.bridged_leg
        if result.caller_gone or call.transfer_requested():
            # the call is gone, or a REST transfer ended the bridge: the action is told, not followed
            if self.action:
                call.post(self.action, self.method, self._action_params(call, result), "DialAction")
            return
        if self.action:
            params = self._action_params(call, result)
            if self.redirect:
                raise NextDocument(self.action, self.method, params, "action")
            call.post(self.action, self.method, params, "DialAction")
        if bridged is not None and self.redirect:
            end = from_fs_cause(result.hangup_cause, True, "outbound")
            raise EndCall(CallEnd(end.code, SOURCE_CALLEE if end.code == 4000 else end.source, end.fs_cause))

    def _action_params(self, call, result):
        bridged = result.bridged_leg
        return call.params(Event="DialAction", DialAction="hangup" if bridged else result.status,
                           DialStatus=result.status, DialRingStatus="true" if result.rang else "false",
                           DialHangupCause=result.hangup_cause, DialALegUUID=call.uuid,
                           DialBLegUUID=bridged.uuid if bridged else "")

    def _leg_event(self, call, dialer, kind, leg):
        if not self.callback_url:
            return
        event = {"answer": "DialAnswer", "connected": "DialConnected", "hangup": "DialHangup",
                 "digits": "DialDigitsMatch"}[kind]
        fields = {"Event": event, "DialAction": kind, "DialALegUUID": call.uuid, "DialBLegUUID": leg.uuid,
                  "DialBLegStatus": kind, "DialBLegFrom": leg.from_number, "DialBLegTo": leg.to,
                  "DialBLegPosition": leg.position}
        headers = dict(self.sip_headers or {})
        headers.update(leg.target.sip_headers)
        fields.update({f"X-VH-{name}": value for name, value in headers.items()})
        if kind == "hangup":
            fields.update(self._leg_hangup_fields(call, dialer, leg))
        elif kind == "digits":
            fields.update(DialDigitsMatch=leg.digits_matched, DialDigitsPressedBy=leg.digits_by)
        call.post(self.callback_url, self.callback_method, call.params(**fields), event)

    @staticmethod
    def _leg_hangup_fields(call, dialer, leg):
        cause = leg.hangup_cause or "NORMAL_CLEARING"
        if dialer.timed_out(leg):
            code, source = 6010, SOURCE_VOBIZ
        else:
            end = from_fs_cause(cause, leg.answered_at is not None, "outbound")
            code, source = end.code, end.source
            if leg.ended_by_caller:
                code = 4000 if leg.answered_at is not None else 1000
                source = SOURCE_CALLER
            elif leg.ended_by_request:
                source = SOURCE_API
        duration = leg.duration_s
        return {"DialBLegDuration": duration, "DialBLegBillDuration": duration, "DialBLegHangupCause": cause,
                "DialBLegHangupCauseCode": code, "DialBLegHangupCauseName": CODE_NAMES.get(code, "Unknown"),
                "DialBLegHangupSource": source}
