"""The call loop (docs/internals.md, verbs): answer URL → document → verbs in order → next document → hangup webhook.

`Interpreter(ctx).run()` runs in the call's greenlet. It fetches the answer document (with the
fallback URL), runs its verbs one after another, replaces the document on Redirect / action
hand-off / REST transfer, hangs up at the end of the document (Vobiz 4010), and finally posts the
hangup webhook with the full Vobiz parameter set. Every way a call can end is mapped to a Vobiz
hangup code (verbs/hangup_codes.py), and every error is logged once with the call UUID and carried
into the call record and the hangup webhook's `Error` field.
"""
from __future__ import annotations

import logging
import time

from esl_app import CallGone, ESLError, ESLTimeout

from . import hangup_codes as codes
from .document import parse_document
from .errors import DocumentError, NotSupportedError
from .flow import EndCall, NextDocument, NextSection
from .hangup_webhook import hangup_params
from .twiml.status_callback import completed_extra

log = logging.getLogger("callfork.interpreter")

# a document that keeps redirecting to itself must not spin forever (Plivo: MAX_REDIRECT): at most
# MAX_DOCUMENTS per call, and at most MAX_IDLE_DOCUMENTS in a row whose verbs took under IDLE_S
# (a Redirect chain that plays nothing); an IVR menu that loops while it talks is never cut
MAX_DOCUMENTS = 1000
MAX_IDLE_DOCUMENTS = 25
MAX_SECTION_JUMPS = 1000     # SWML transfers between sections of one document
IDLE_S = 0.5


class Interpreter:
    def __init__(self, ctx):
        self.ctx = ctx
        ctx.interpreter = self
        self._idle_documents = 0     # documents in a row that took under IDLE_S (redirect loop guard)
        self._last_url = ""

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> codes.CallEnd:
        ctx = self.ctx
        number = ctx.number
        end = None
        try:
            if ctx.status_callback is not None and ctx.session.answered:
                # a call placed through the REST API is answered before it reaches callfork
                ctx.status_callback.send(ctx.post, ctx.params(), "answered")
            inline = getattr(number, "answer_document", None)   # a REST call's inline document (Twiml)
            doc = (self._inline(inline, "answer") if inline else
                   self._fetch(number.answer_url, number.answer_method,
                               ctx.event_params("StartApp"), "answer", fallback=number.fallback_url))
            while True:
                try:
                    self._run_document(doc)
                    self._check_transfer()
                    if ctx.session.gone:
                        # the last verb returned because the call went away (the caller hung up):
                        # the document did not run out, so this is no 4010
                        raise CallGone(ctx.session.hangup_cause, ctx.uuid)
                    end = codes.end_of_document()
                    break
                except NextDocument as nxt:
                    inline = getattr(nxt, "document", None)   # a REST transfer's inline document
                    doc = (self._inline(inline, nxt.kind) if inline else
                           self._fetch(nxt.url, nxt.method, nxt.params, nxt.kind))
        except EndCall as stop:
            end = stop.end
            if end.error and ctx.session.gone and ctx.take_requested_end() is None:
                # the caller hung up while a document was fetched: that, not the fetch, ended the
                # call (the fetch problem is still worth a line in the log)
                log.warning("call %s: after the call ended: %s", ctx.uuid, end.error)
                end = None
        except CallGone:
            # the caller, FreeSWITCH, or the REST API (which leaves its reason) ended it
            end = ctx.take_requested_end()
        except Exception as exc:  # a bug of ours must still end the call cleanly and be reported
            log.exception("call %s: internal error", ctx.uuid)
            end = codes.CallEnd(5000, codes.SOURCE_ERROR, "NORMAL_CLEARING", f"internal error: {exc}")
        if end is not None and end.error:
            ctx.error(end.error)
        if end is not None and not ctx.session.gone:
            try:
                ctx.session.hangup(end.fs_cause)
            except Exception as exc:  # FreeSWITCH slow or gone: the call must still be finished
                log.error("call %s: hangup (%s) failed: %r", ctx.uuid, end.fs_cause, exc)
        try:
            return self._finish(end)
        finally:
            ctx.interpreter = None   # no cycle left: the call's objects are freed at once, not by the GC

    def _run_document(self, doc) -> None:
        ctx = self.ctx
        ctx.document_index += 1
        if ctx.document_index > MAX_DOCUMENTS:
            raise EndCall(codes.CallEnd(5000, codes.SOURCE_ERROR, "NORMAL_CLEARING",
                                        f"more than {MAX_DOCUMENTS} documents on one call (redirect loop?)"))
        if self._idle_documents >= MAX_IDLE_DOCUMENTS:
            raise EndCall(codes.CallEnd(5000, codes.SOURCE_ERROR, "NORMAL_CLEARING",
                                        f"redirect loop: {MAX_IDLE_DOCUMENTS} documents in a row handed the "
                                        "call on without doing anything (last from "
                                        f"{self._last_url or 'the answer URL'})"))
        for warning in doc.warnings:
            log.warning("call %s: %s", ctx.uuid, warning)
        started = time.monotonic()
        verbs, jumps = doc.verbs, 0
        try:
            while verbs is not None:
                try:
                    for position, verb in enumerate(verbs):
                        self._check_transfer()
                        ctx.verb_position = position
                        self.run_verb(verb)
                    verbs = None
                except NextSection as jump:     # SWML transfer to a section of this document
                    jumps += 1
                    if jumps > MAX_SECTION_JUMPS:
                        raise EndCall(codes.CallEnd(5000, codes.SOURCE_ERROR, "NORMAL_CLEARING",
                                                    f"more than {MAX_SECTION_JUMPS} transfers between sections "
                                                    "of one document (a loop?)")) from None
                    verbs = (getattr(doc, "sections", None) or {}).get(jump.name)
                    if verbs is None:
                        raise EndCall(codes.document_invalid(self._doc_kind(), f"no section {jump.name!r} "
                                                             "to transfer to")) from None
                    ctx.timeline("section", {"name": jump.name})
        finally:
            quick = time.monotonic() - started < IDLE_S
            self._idle_documents = self._idle_documents + 1 if quick else 0

    def run_verb(self, verb, nested: bool = False) -> None:
        """Run one verb (also used by verbs that run nested verbs, e.g. PreAnswer, Gather prompts)."""
        ctx = self.ctx
        outer = ctx.current_verb
        ctx.current_verb = verb
        ctx.timeline("verb", {"verb": verb.name, "line": verb.line, "nested": nested})
        try:
            verb.run(ctx)
        except NotSupportedError as exc:   # its text already says where (line:column, element)
            raise EndCall(codes.document_invalid(self._doc_kind(), _describe(exc)))
        except NotImplementedError as exc:
            raise EndCall(codes.document_invalid(self._doc_kind(), f"line {verb.line}: {exc}"))
        except ESLTimeout as exc:
            raise EndCall(codes.CallEnd(5000, codes.SOURCE_ERROR, "NORMAL_CLEARING",
                                        f"{verb.name}: FreeSWITCH did not answer in time ({exc})"))
        except ESLError as exc:
            # "-ERR No such channel" and the like: the channel went away before its hangup event
            # reached us (a caller hanging up at that moment); otherwise a real refusal
            if ctx.session.gone or ctx.session.wait_gone(1.0):
                raise CallGone(ctx.session.hangup_cause, ctx.uuid) from None
            raise EndCall(codes.CallEnd(5000, codes.SOURCE_ERROR, "NORMAL_CLEARING",
                                        f"{verb.name}: FreeSWITCH refused a command ({exc})"))
        finally:
            ctx.current_verb = outer
        if not nested:
            self._check_transfer()

    def _check_transfer(self) -> None:
        ctx = self.ctx
        transfer = ctx.take_transfer()
        if transfer is not None:
            url, method, document = transfer
            nxt = NextDocument(url, method, ctx.event_params("Transfer"), "transfer")
            nxt.document = document
            raise nxt

    def _doc_kind(self) -> str:
        return getattr(self, "_last_kind", "answer")

    # -- documents -------------------------------------------------------------------------------
    def _fetch(self, url: str, method: str, params: dict, kind: str, fallback: str = "",
               label: str = ""):
        """Fetch and parse the next document; failures end the call with the Vobiz codes.

        `fallback` (answer documents only): the number's fallback URL, requested with its
        `fallback_method` and the same parameters when the URL is unreachable, answers an HTTP
        error, or returns a document that cannot be used (Vobiz application fallback_answer_url)."""
        ctx = self.ctx
        self._last_kind = kind
        self._last_url = url
        label = label or f"{kind} URL"
        try:
            result = ctx.services.fetch(url, method or "POST", params)
        except Exception as exc:  # webhooks.FetchError, or a bad URL
            if getattr(exc, "kind", None) == "too_large":
                # the app answered, but with a body over Vobiz's 100 KB limit: an invalid document
                # (8011/8012/...), not an unreachable URL; the fetch stopped reading at the limit
                error = f"{label} {url}: the document is larger than the 100 KB limit; reading " \
                        f"stopped ({_reason(exc, url)})"
                if fallback:
                    return self._fallback(fallback, params, kind, error)
                raise EndCall(codes.document_invalid(kind, error))
            error = f"{label} {url}: {_reason(exc, url)}"
            if fallback and getattr(exc, "kind", None) in ("unreachable", "http_status"):
                return self._fallback(fallback, params, kind, error)
            raise EndCall(codes.fetch_failed(kind, error))
        ctx.timeline("document_fetched", {"kind": kind, "url": result.url, "status": result.status})
        ctx.document_url = url   # what a TwiML document's relative URLs are resolved against
        try:
            return parse_document(result.body, result.content_type, api=ctx.api)
        except DocumentError as exc:
            detail = "; ".join(_describe(e) for e in getattr(exc, "errors", None) or [exc])
            error = f"{label} {result.url}: {detail}"
            if fallback:
                return self._fallback(fallback, params, kind, error)
            raise EndCall(codes.document_invalid(kind, error))

    def _inline(self, body: str, kind: str):
        """A document the REST request carried itself (Twilio's `Twiml`), parsed as a fetched one
        would be; a bad one ends the call with the same codes (there is no URL to fall back from)."""
        self._last_kind = kind
        self._last_url = f"the inline {kind} document"
        self.ctx.timeline("document_inline", {"kind": kind})
        try:
            return parse_document(body, None, api=self.ctx.api)
        except DocumentError as exc:
            detail = "; ".join(_describe(e) for e in getattr(exc, "errors", None) or [exc])
            raise EndCall(codes.document_invalid(kind, f"the inline {kind} document: {detail}"))

    def _fallback(self, fallback: str, params: dict, kind: str, why: str):
        """The fallback URL after the answer URL failed with `why`; if it fails too, the call ends
        with its code (7011 / 8011) and an error that says what both URLs did."""
        ctx = self.ctx
        method = getattr(ctx.number, "fallback_method", None) or "POST"
        log.warning("call %s: %s; trying the fallback URL %s", ctx.uuid, why, fallback)
        ctx.timeline("fallback", {"reason": why, "url": fallback})
        try:
            return self._fetch(fallback, method, params, kind, label="fallback URL")
        except EndCall as stop:
            stop.end.error = f"{why}; {stop.end.error}"
            raise

    # -- the end ---------------------------------------------------------------------------------
    def _finish(self, end):
        """After the call is down: stop what runs in the background, post the hangup webhook."""
        ctx = self.ctx
        for stream in list(ctx.streams.values()):
            try:
                stream.on_call_end()
            except Exception:
                log.exception("call %s: stream cleanup failed", ctx.uuid)
        try:
            complete = ctx.session.wait_hangup_complete(timeout=5)
        except Exception as exc:
            log.error("call %s: no CHANNEL_HANGUP_COMPLETE (%r)", ctx.uuid, exc)
            complete = None
        cause = (complete.get("Hangup-Cause") if complete else None) or ctx.session.hangup_cause
        if end is None:
            end = codes.from_fs_cause(cause, ctx.answered or _was_answered(complete), ctx.direction)
            if end.error:   # FreeSWITCH ended the call for a reason of its own: say so once
                ctx.error(end.error)
        params = hangup_params(ctx, complete, end, cause)
        # the record first: an app that asks for the call when its Hangup webhook arrives finds it ended
        self._store_end(params, end)
        errors = len(ctx.errors)
        number = ctx.number
        try:
            if ctx.status_callback is not None:    # a Twilio app: its StatusCallback's `completed`
                answered = bool(params.get("AnswerTime"))
                extra = completed_extra(end, answered, int(params["Duration"] or 0), params["Error"])
                ctx.status_callback.send(ctx.post, ctx.params(), "completed", **extra)
            else:
                ctx.post(number.hangup_url or number.answer_url, number.hangup_method or "POST", params, "Hangup")
        except Exception:  # e.g. the outbox refused the URL: the record says how it ended
            log.exception("call %s: the Hangup webhook could not be queued", ctx.uuid)
        for recording in list(ctx.recordings):
            try:
                recording.on_call_end(complete)
            except Exception:
                log.exception("call %s: recording finalisation failed", ctx.uuid)
        if len(ctx.errors) > errors:   # a recording could not be finished: the record says so too
            self._store_end(params, end)
        log.info("call %s ended: %s %s (%s)", ctx.uuid, end.code, end.name, end.source)
        return end

    def _store_end(self, params, end) -> None:
        ctx = self.ctx
        try:
            ctx.services.store.upsert_call(
                ctx.uuid, status=params["CallStatus"], hangup_cause=params["HangupCause"],
                hangup_cause_code=end.code, hangup_cause_name=end.name, hangup_source=end.source,
                end_time=time.time(), error="; ".join(ctx.errors))
        except Exception:
            log.exception("call %s: could not store the call record", ctx.uuid)


def _describe(error) -> str:
    """A document error as "line L:C: <Element>: message", without a position it does not have."""
    if getattr(error, "line", 0):
        return str(error)
    element = getattr(error, "element", None)
    message = getattr(error, "message", None) or str(error)
    return f"<{element}>: {message}" if element else message


def _reason(exc, url: str) -> str:
    """A fetch error's text without the repeated URL and kind: "connection refused", "answered HTTP 500"."""
    text = getattr(exc, "message", None) or str(exc)
    for prefix in (f"{url}: ", f"{url} "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def _was_answered(complete) -> bool:
    if complete is None:
        return False
    return complete.get("variable_answer_epoch", "0") not in ("", "0")
