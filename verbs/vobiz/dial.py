"""<Dial> with <Number>, <User> and a <Record startOnDialAnswer> child. Parsed; running it is not supported yet."""
import re

from ..base import Attr, AttrError, Custom, Enum, Int, Text, check_url
from ..errors import NotSupportedError
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


SIP_HEADERS = Custom(_sip_headers, "k=v,k2=v2")


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
        Attr("callerId", "caller_id", Text(), None),
        Attr("callerName", "caller_name", Text(), None),
        Attr("timeout", "timeout", Int(minimum=1), 120),          # effective Vobiz default
        Attr("timeLimit", "time_limit", Int(minimum=1), 14400),
        Attr("hangupOnStar", "hangup_on_star", BOOL, False),
        Attr("dialMusic", "dial_music", Custom(_dial_music, "URL or real"), "real"),
        Attr("confirmSound", "confirm_sound", HTTP_URL, None),
        Attr("confirmKey", "confirm_key", Enum(*"0123456789#*"), None),
        Attr("confirmTimeout", "confirm_timeout", Int(minimum=1), None),
        Attr("digitsMatch", "digits_match", Text(), None),
        Attr("digitsMatchBLeg", "digits_match_b_leg", Text(), None),
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

    def run(self, call):
        raise NotSupportedError("<Dial> is not supported by callfork yet", self.line, self.column, self.name)
