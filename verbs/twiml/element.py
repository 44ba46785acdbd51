"""What every TwiML verb class shares: URLs that may be relative to the document's URL.

TwiML verbs are read by the same XML parser as Vobiz elements (verbs/xml_parser.py, with the TwiML
dialect of verbs/twiml/parser.py), so they are VobizVerb subclasses; what differs is that Twilio
takes relative URLs (action, Redirect's text, recordingStatusCallback ...) and resolves them against
the URL of the document that holds them, as a browser resolves a link
(https://www.twilio.com/docs/voice/twiml/redirect). They are checked at parse time (`REL_URL`) and
resolved when the verb runs (`resolve`), against `call.document_url`, which the interpreter sets
on every fetch.
"""
from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from ..base import AttrError, Enum, check_url
from ..vobiz.element import HTTP, VobizVerb

METHOD = Enum("GET", "POST", case_insensitive=True)


def check_rel_url(raw: str) -> str:
    """An absolute http(s) URL (cleaned as Vobiz URLs are), or a relative reference; AttrError else."""
    text = raw.strip() if isinstance(raw, str) else raw
    if not isinstance(text, str) or not text:
        raise AttrError("the URL is empty")
    try:
        scheme = urlsplit(text).scheme
    except ValueError as exc:   # an unclosed IPv6 bracket: a bad document, not a crash
        raise AttrError(f'"{text[:60]}" is not a valid URL ({exc})') from None
    if scheme:
        return check_url(text, HTTP)
    if any(c.isspace() for c in text):
        raise AttrError(f'"{text[:60]}" is not a URL (it contains whitespace)')
    if text.startswith("//"):
        return check_url("http:" + text, HTTP)[len("http:"):]
    return text.split("#", 1)[0] or text


class RelUrl:
    """An attribute holding an absolute http(s) URL or one relative to the document's URL."""

    def parse(self, raw, warnings):
        return check_rel_url(raw)

    def describe(self):
        return "absolute or relative http/https URL"


REL_URL = RelUrl()


def resolve(call, url: str | None) -> str | None:
    """`url` resolved against the running document's URL (None stays None). A relative URL in a
    document that has no URL (an inline one) is returned as it is, and the fetch refuses it."""
    if not url:
        return url
    if urlsplit(url).scheme:
        return url
    base = getattr(call, "document_url", None) or ""
    return urljoin(base, url) if urlsplit(base).scheme in HTTP else url


class TwimlVerb(VobizVerb):
    """A TwiML verb or noun. Its URL text (TEXT = 'url') may be relative to the document's URL."""

    def read_text(self, text: str, ctx) -> None:
        if self.TEXT != "url":
            return super().read_text(text, ctx)
        self.text = text.strip()
        if not self.text:
            if self.TEXT_REQUIRED:
                ctx.error(self, "the URL (the element's text) is missing")
            return
        try:
            self._url = check_rel_url(self.text)
        except AttrError as exc:
            ctx.error(self, f"URL: {exc}")

    def target(self, call) -> str | None:
        """The element's URL text, resolved against the running document's URL."""
        return resolve(call, self.url)
