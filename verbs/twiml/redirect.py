"""<Redirect method>: go on with the TwiML at the URL (the element's text; relative URLs are resolved
against the current document's URL), requested with the call's parameters
(https://www.twilio.com/docs/voice/twiml/redirect). The verbs after it never run."""
from __future__ import annotations

from ..base import Attr
from ..flow import NextDocument
from .element import METHOD, TwimlVerb


class Redirect(TwimlVerb):
    name = "Redirect"
    TEXT = "url"
    TEXT_REQUIRED = True
    ATTRIBUTES = (
        Attr("method", "method", METHOD, "POST"),
    )

    def run(self, call) -> None:
        raise NextDocument(self.target(call), self.method, call.params(), "redirect")
