"""TwiML documents → typed verb objects (not written yet: every TwiML document is refused with this
error until the parser lands)."""
from __future__ import annotations

from ..errors import NotSupportedError


def parse_twiml(raw) -> tuple[list, list[str]]:
    raise NotSupportedError("TwiML is not implemented yet")
