"""The call loop (DESIGN §4): answer URL → document → verbs in order → next document → hangup webhook.

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

from esl_app import CallGone, ESLTimeout

from . import hangup_codes as codes
from .document import parse_document
from .errors import DocumentError, NotSupportedError
from .flow import EndCall, NextDocument
from .hangup_webhook import hangup_params

log = logging.getLogger("callfork.interpreter")

# a document that keeps redirecting to itself must not spin forever (Plivo: MAX_REDIRECT)
MAX_DOCUMENTS = 1000


class Interpreter:
    def __init__(self, ctx):
        self.ctx = ctx
        ctx.interpreter = self

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> codes.CallEnd:
        ctx = self.ctx
        number = ctx.number
        end = None
        try:
            doc = self._fetch(number.answer_url, number.answer_method,
                              ctx.params(Event="StartApp"), "answer", fallback=number.fallback_url)
            while True:
                try:
                    self._run_document(doc)
                    self._check_transfer()
                    end = codes.end_of_document()
                    break
                except NextDocument as nxt:
                    doc = self._fetch(nxt.url, nxt.method, nxt.params, nxt.kind)
        except EndCall as stop:
            end = stop.end
        except CallGone:
            # the caller, FreeSWITCH, or the REST API (which leaves its reason) ended it
            end = ctx.hangup_requested
        except Exception as exc:  # a bug of ours must still end the call cleanly and be reported
            log.exception("call %s: internal error", ctx.uuid)
            end = codes.CallEnd(5000, codes.SOURCE_ERROR, "NORMAL_CLEARING", f"internal error: {exc}")
        if end is not None and end.error:
            ctx.error(end.error)
        if end is not None and not ctx.session.gone:
            ctx.session.hangup(end.fs_cause)
        return self._finish(end)

    def _run_document(self, doc) -> None:
        ctx = self.ctx
        ctx.document_index += 1
        if ctx.document_index > MAX_DOCUMENTS:
            raise EndCall(codes.CallEnd(5000, codes.SOURCE_ERROR, "NORMAL_CLEARING",
                                        f"more than {MAX_DOCUMENTS} documents on one call (redirect loop?)"))
        for warning in doc.warnings:
            log.warning("call %s: %s", ctx.uuid, warning)
        for position, verb in enumerate(doc.verbs):
            self._check_transfer()
            ctx.verb_position = position
            self.run_verb(verb)

    def run_verb(self, verb, nested: bool = False) -> None:
        """Run one verb (also used by verbs that run nested verbs, e.g. PreAnswer, Gather prompts)."""
        ctx = self.ctx
        outer = ctx.current_verb
        ctx.current_verb = verb
        ctx.timeline("verb", {"verb": verb.name, "line": verb.line, "nested": nested})
        try:
            verb.run(ctx)
        except NotSupportedError as exc:
            raise EndCall(codes.document_invalid(self._doc_kind(), f"line {verb.line}: {exc}"))
        except NotImplementedError as exc:
            raise EndCall(codes.document_invalid(self._doc_kind(), f"line {verb.line}: {exc}"))
        except ESLTimeout as exc:
            raise EndCall(codes.CallEnd(5000, codes.SOURCE_ERROR, "NORMAL_CLEARING",
                                        f"{verb.name}: FreeSWITCH did not answer in time ({exc})"))
        finally:
            ctx.current_verb = outer
        if not nested:
            self._check_transfer()

    def _check_transfer(self) -> None:
        ctx = self.ctx
        if ctx.pending_transfer is not None:
            url, method = ctx.pending_transfer
            ctx.pending_transfer = None
            ctx.interrupted.clear()
            raise NextDocument(url, method, ctx.params(Event="Transfer"), "transfer")

    def _doc_kind(self) -> str:
        return getattr(self, "_last_kind", "answer")

    # -- documents -------------------------------------------------------------------------------
    def _fetch(self, url: str, method: str, params: dict, kind: str, fallback: str = ""):
        """Fetch and parse the next document; failures end the call with the Vobiz codes."""
        ctx = self.ctx
        self._last_kind = kind
        services = ctx.services
        try:
            result = services.fetch(url, method or "POST", params, fallback=fallback or None)
        except Exception as exc:  # webhooks.FetchError, or a bad URL
            raise EndCall(codes.fetch_failed(kind, f"{kind} URL {url}: {exc}"))
        ctx.timeline("document_fetched", {"kind": kind, "url": result.url, "status": result.status})
        try:
            return parse_document(result.body, result.content_type)
        except DocumentError as exc:
            detail = "; ".join(str(e) for e in getattr(exc, "errors", None) or [exc])
            raise EndCall(codes.document_invalid(kind, f"{kind} document from {result.url}: {detail}"))

    # -- the end ---------------------------------------------------------------------------------
    def _finish(self, end):
        """After the call is down: stop what runs in the background, post the hangup webhook."""
        ctx = self.ctx
        for stream in list(ctx.streams.values()):
            try:
                stream.on_call_end()
            except Exception:
                log.exception("call %s: stream cleanup failed", ctx.uuid)
        complete = ctx.session.wait_hangup_complete(timeout=5)
        cause = (complete.get("Hangup-Cause") if complete else None) or ctx.session.hangup_cause
        if end is None:
            end = codes.from_fs_cause(cause, ctx.answered or _was_answered(complete))
        params = hangup_params(ctx, complete, end, cause)
        number = ctx.number
        ctx.post(number.hangup_url or number.answer_url, number.hangup_method or "POST", params, "Hangup")
        for recording in list(ctx.recordings):
            try:
                recording.on_call_end(complete)
            except Exception:
                log.exception("call %s: recording finalisation failed", ctx.uuid)
        try:
            ctx.services.store.upsert_call(
                ctx.uuid, status=params["CallStatus"], hangup_cause=params["HangupCause"],
                hangup_cause_code=end.code, hangup_cause_name=end.name, hangup_source=end.source,
                end_time=time.time(), error="; ".join(ctx.errors))
        except Exception:
            log.exception("call %s: could not store the call record", ctx.uuid)
        log.info("call %s ended: %s %s (%s)", ctx.uuid, end.code, end.name, end.source)
        return end


def _was_answered(complete) -> bool:
    if complete is None:
        return False
    return complete.get("variable_answer_epoch", "0") not in ("", "0")
