"""TwiML <Sip> (https://www.twilio.com/docs/voice/twiml/sip): a sip: URI <Dial> rings through
`[freeswitch] sip_dialstring` (verbs/dial_plan.py), with its leg's statusCallback like <Number>'s
(verbs/twiml/number.py). `username`/`password` are refused when the document is parsed: callfork
has no way to hand FreeSWITCH digest credentials per leg (a gateway in the dial string has its own).
"""
import re

from ..base import Attr, Text
from .number import LEG_ATTRIBUTES, LegNoun

SIP_URI = re.compile(r"sips?:[^\s@,'\"\[\]{}|^$\\]+(@[^\s@,'\"\[\]{}|^$\\]+)?", re.I)


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
        if "username" in self.present or "password" in self.present:
            errors.append("username/password (SIP digest credentials) are not supported by callfork: "
                          "put them in the gateway the sip_dialstring names")
        return errors
