"""Control flow between verbs and the interpreter loop.

A verb that hands the call to a new document (Redirect, an action with redirect=true, a REST
transfer) raises `NextDocument`; a verb that decides the call is over raises `EndCall`. The
interpreter catches both (docs/internals.md, verbs). Hangup by the caller arrives as `esl_app.CallGone`.
"""
from __future__ import annotations

from .hangup_codes import CallEnd


class NextDocument(Exception):
    """Fetch `url` and replace the running document with what it returns.

    `kind` is `redirect`, `action` or `transfer`: it picks the Vobiz error codes if the fetch fails
    (7014/8014, 7012/8012, 7013/8013).
    """

    def __init__(self, url: str, method: str, params: dict, kind: str):
        super().__init__(f"{kind} to {url}")
        self.url = url
        self.method = method
        self.params = params
        self.kind = kind


class NextSection(Exception):
    """Go on with another section of the running (SWML) document (SWML transfer)."""

    def __init__(self, name: str):
        super().__init__(f"transfer to section {name}")
        self.name = name


class EndCall(Exception):
    """End the call now, for the reason carried in `end`."""

    def __init__(self, end: CallEnd):
        super().__init__(f"{end.code} {end.name}: {end.error}" if end.error else f"{end.code} {end.name}")
        self.end = end
