"""TwiML documents → typed verb objects: verbs/xml_parser.py's hardened parsing with the TwiML dialect
(the element table of verbs/twiml/__init__.py), so a bad document is one XMLError listing every
problem with its line:column, as for Vobiz XML."""
from __future__ import annotations

from ..xml_parser import Dialect, parse_xml


def _dialect() -> Dialect:
    from . import ELEMENTS, NOT_SUPPORTED, RESPONSE_CHILDREN   # read at each parse: the table grows
    return Dialect("TwiML", "a TwiML document", ELEMENTS, RESPONSE_CHILDREN, NOT_SUPPORTED, speech="Say")


def parse_twiml(raw) -> tuple[list, list[str]]:
    """Parse a TwiML document; return (verbs, warnings) or raise XMLError listing every problem."""
    return parse_xml(raw, _dialect())
