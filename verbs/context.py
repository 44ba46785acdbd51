"""The call as a verb sees it: `CallContext`.

A verb never touches sockets: it calls the ESL `CallSession` (through `ctx.session`), asks the
context for the standard Vobiz request parameters, fetches the next document, posts status
callbacks through the durable outbox, and records what happened in the call's timeline.

The context is built by the service (callfork/service.py) with a `services` object
(callfork/verb_services.py) that provides:
  fetch(url, method, params) -> webhooks.FetchResult          (synchronous, signed, with timeouts)
  check_url(url, schemes) -> url                               (a URL the app gave; ValueError)
  connect_addresses(host, port) -> getaddrinfo tuples          (checked addresses to dial; ValueError)
  post(call_uuid, url, method, params, event, encoding='form') (durable, fire-and-forget)
  record_event(call_uuid, kind, detail)                        (the call's timeline)
  media_file(url) -> local path                                (download + cache; raises on failure)
  watch_legs(leg_uuids) -> queue / unwatch_legs(leg_uuids)     (events of the legs a call dials)
  store                                                        (records.Store: records, timeline)
  relay                                                        (audio_fork.Relay, for streams)
  config (esl_app.Config), number (the matched [[numbers]] entry)
  recordings_dir (pathlib.Path), public_url (str), auth_id (str), auth_token (str)
"""
from __future__ import annotations

import collections
import logging
import time
from datetime import datetime, timezone

import gevent
import gevent.event

from esl_app import CallGone

from . import idle_audio
from .twiml.request_params import twilio_params
from .twiml.status_callback import StatusCallback

log = logging.getLogger("callfork.call")


def flite_voice(config, voice: str) -> str:
    """The flite voice for a document's voice (WOMAN, MAN, Polly.*, ...): [tts] voices, a name starting
    with MAN → MAN's, any other → WOMAN's."""
    table = getattr(getattr(config, "tts", None), "voices", None) or {"WOMAN": "slt", "MAN": "rms"}
    if voice in table:
        return table[voice]
    return table.get("WOMAN", "slt") if not voice.upper().startswith("MAN") else table.get("MAN", "rms")


def plain_number(number: str) -> str:
    """A number as Vobiz and Plivo send it in From / To: without the leading '+' (seen on inbound
    and on API-placed calls alike, docs/decisions.md)."""
    return number[1:] if number.startswith("+") else number


class CallContext:
    """One call's state shared by the interpreter and the verbs. Owned by the call's greenlet."""

    def __init__(self, session, services):
        self.session = session
        self.services = services
        self.uuid = session.uuid
        self.config = services.config
        self.number = services.number
        # the API the app speaks ('vobiz' or 'twilio'): its documents, webhook parameters, signatures
        self.api = getattr(services.number, "api", None) or "vobiz"
        self.status_callback = None      # a Twilio app's StatusCallback (verbs/twiml/status_callback.py)
        if self.api == "twilio":
            number = services.number
            self.status_callback = StatusCallback(number.hangup_url, number.hangup_method,
                                                  getattr(number, "status_callback_events", None) or ("completed",))
            self.status_callback.sequence = getattr(number, "status_callback_sequence", 0)
        self.direction = session.direction or "inbound"
        self.from_number = plain_number(session.caller_id_number or "")
        self.to_number = plain_number(session.destination_number or "")
        self.caller_name = session.caller_id_name or session.caller_id_number or ""
        self.session_start = datetime.now(timezone.utc)
        self.pre_answered = False
        self.document_index = 0          # how many documents this call has run (answer = 1)
        self.current_verb = None
        self.streams = {}                # stream_id -> stream handle (background streams live here)
        self.recordings = []             # session recordings to finish at hangup
        self._after_fork = []            # what waits for the next stream's fork (a nested <Stream>'s <Record>)
        self._stream_events = False      # DTMF and mod_audio_fork events go to the streams (hook_stream_events)
        self.hangup_requested = None     # CallEnd chosen before hanging up (a verb, or taken from a request)
        self._requests = collections.deque()  # what other greenlets asked of this call (request_*)
        self.errors = []                 # error texts surfaced in the call record and webhook
        self.early_media_only = False    # inside <PreAnswer>: media verbs pre-answer instead of answering
        self.verb_position = 0           # index of the running verb in its document (0 = first)
        self.interpreter = None          # set by the Interpreter, for verbs that run nested verbs
        self.barge_in = None             # set by <Gather> while its prompts play: () -> bool
        self.vars = {}                   # SWML `vars` scope (stream_result, record_call_url, ...)
        self.swml_controls = {}          # SWML control_id registries (streams, recordings)
        self.interrupted = gevent.event.Event()  # set to stop the running verb (transfer, REST)
        self.idle = idle_audio.IdleAudio()  # what FreeSWITCH writes while no app plays
        self.answered_at = None          # when callfork answered (epoch s), if it did
        self.dial_record = None          # a <Record startOnDialAnswer> waiting for the next <Dial>

    def set_parties(self, from_number: str, to_number: str, caller_name: str) -> None:
        """Who the call is from and to, and the caller's name, when the channel cannot say: a call
        placed through the REST API, whose channel FreeSWITCH has given the caller id "Outbound Call"
        <last part of the dial string> (it flips caller and callee id on a channel it originates,
        tests/fixtures/fs-captures/originate-callerid.json), gets the ones its request named."""
        self.from_number = plain_number(from_number)
        self.to_number = plain_number(to_number)
        self.caller_name = caller_name

    # -- facts -----------------------------------------------------------------------------------
    @property
    def answered(self) -> bool:
        return self.session.answered

    @property
    def auth_id(self) -> str:
        return self.services.auth_id

    def call_status(self) -> str:
        if self.session.gone:
            return "completed"
        return "in-progress" if self.answered else "ringing"

    def params(self, **extra) -> dict:
        """The standard request parameters, plus `extra`: Vobiz's (https://docs.vobiz.ai/xml/request),
        or Twilio's for a Twilio app (verbs/twiml/request_params.py)."""
        if self.api == "twilio":
            return twilio_params(self, **extra)
        p = {
            "CallUUID": self.uuid,
            "From": self.from_number,
            "To": self.to_number,
            "Direction": self.direction,
            "CallStatus": self.call_status(),
            "CallerName": self.caller_name,
            "ParentAuthID": self.auth_id,
            "SessionStart": self.session_start.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "BillRate": "0",
            "STIRAttestation": "Not Applicable",
            "STIRVerification": "Not Applicable",
        }
        if self.direction == "outbound":
            request_uuid = self.session.variables.get("callfork_request_uuid", self.uuid)
            p.update({"ALegUUID": self.uuid, "ALegRequestUUID": request_uuid, "RequestUUID": request_uuid})
        p.update({k: "" if v is None else str(v) for k, v in extra.items()})
        return p

    def event_params(self, event: str) -> dict:
        """The parameters of a document request the engine makes on its own (the answer URL:
        StartApp, a REST transfer: Transfer): Vobiz names the event, Twilio does not."""
        return self.params() if self.api == "twilio" else self.params(Event=event)

    # -- media -----------------------------------------------------------------------------------
    @property
    def is_first_verb(self) -> bool:
        """True for the first verb of the answer document (a leading <Wait> delays the answer)."""
        return self.document_index == 1 and self.verb_position == 0

    def ensure_answered(self) -> None:
        """Lazy answer (docs/internals.md, verbs): the first verb that needs media answers the call.
        Inside <PreAnswer> it only opens early media."""
        if self.early_media_only:
            self.ensure_early_media()
            return
        self._media_defaults()
        if not self.session.answered:
            self.session.answer()
            self.answered_at = time.time()
            self.timeline("answered", {})

    def ensure_early_media(self) -> None:
        self._media_defaults()
        if not self.session.answered and not self.pre_answered:
            self.session.pre_answer()
            self.pre_answered = True
            self.timeline("pre_answered", {})

    def _media_defaults(self) -> None:
        """Once per call, before the first media verb (answer or pre-answer): the channel variables
        of verbs/idle_audio.py (silence written while the call idles, no playback terminator:
        Vobiz only lets digits interrupt <Gather> prompts and <Record>, which set their own)."""
        idle_audio.prepare(self)

    def sleep(self, seconds: float) -> bool:
        """Wait on the engine's clock (DTMF does not end it, except a digit that barges into
        <GetInput>/<GetDigits> prompts). Raises CallGone if the call ends; returns False if the
        verb was interrupted (transfer, barge-in), True when the time ran out."""
        if idle_audio.needed(self):   # FreeSWITCH would write nothing meanwhile: a live stream needs frames
            return idle_audio.hold(self, lambda: False, seconds)
        deadline = time.monotonic() + seconds
        while True:
            if self.interrupted.is_set() or self.barged_in():
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self.session.wait_gone(min(remaining, 0.1)):
                raise CallGone(self.session.hangup_cause, self.uuid)

    def hook_stream_events(self, on_dtmf, on_module_event, module_events) -> None:
        """Once per call, when its first stream starts: the call's DTMF and the module's events
        (`module_events`) reach its streams through `on_dtmf(ctx, event)` and
        `on_module_event(ctx, event)` (verbs/streaming.py). Callbacks run in the ESL dispatch
        greenlet and must not block."""
        if self._stream_events:
            return
        self._stream_events = True
        self.session.on_event("DTMF", lambda ev: on_dtmf(self, ev))
        for name in module_events:
            self.session.on_event(name, lambda ev: on_module_event(self, ev))

    def after_next_fork(self, fn) -> None:
        """Run `fn` once the next stream's fork is attached, or has failed to be (None: forget
        what is still waiting)."""
        if fn is None:
            self._after_fork = []
        else:
            self._after_fork.append(fn)

    def stream_forked(self, stream, attached: bool) -> None:
        """A stream's fork was just attached (or could not be): recordings that started earlier
        are moved behind it when it mixes audio into what the caller hears, then what waited for
        it runs."""
        if attached:
            self.reattach_recordings(stream)
        waiting, self._after_fork = self._after_fork, []
        for fn in waiting:
            fn()

    def reattach_recordings(self, stream) -> None:
        """Media bugs run in attach order: a recording started before `stream`'s fork would miss
        the stream's audio (verbs/recording.py BackgroundRecording)."""
        if not stream.injects_audio:
            return
        for recording in list(self.recordings):
            reattach = getattr(recording, "reattach", None)
            if reattach is not None:
                reattach()

    def barged_in(self) -> bool:
        """Inside <Gather> prompts: True once the caller pressed a digit (stop prompting)."""
        return bool(self.barge_in and self.barge_in())

    def run_nested(self, verb) -> None:
        """Run a child verb (PreAnswer's children, Gather's prompts) through the interpreter."""
        self.interpreter.run_verb(verb, nested=True)

    def tts_voice(self, voice: str, language: str) -> str:
        """The flite voice for a Speak voice (WOMAN/MAN/Polly.*) from [tts] in the config."""
        return flite_voice(self.config, voice)

    # -- webhooks --------------------------------------------------------------------------------
    def post(self, url: str, method: str, params: dict, event: str, encoding: str = "form") -> None:
        """A fire-and-forget status callback through the durable outbox."""
        if not url:
            return
        self.services.post(self.uuid, url, method or "POST", params, event, encoding)
        self.timeline("webhook_queued", {"event": event, "url": url})

    def timeline(self, kind: str, detail: dict) -> None:
        try:
            self.services.record_event(self.uuid, kind, detail)
        except Exception:  # the record must never take the call down
            log.exception("call %s: could not record %s", self.uuid, kind)

    def error(self, message: str) -> None:
        """A problem the user must see: logged once with the call UUID, kept for the webhook."""
        log.error("call %s: %s", self.uuid, message)
        self.errors.append(message)
        self.timeline("error", {"message": message})

    # -- requests from other greenlets (the REST API, shutdown) --------------------------------
    # They never change the call's state: they leave a request and wake the call's greenlet, which
    # takes it (take_transfer / take_requested_end) between verbs or when the call is gone.
    def request_transfer(self, url: str, method: str = "POST", document: str | None = None) -> None:
        """Interrupt the running verb and continue with the document at `url` (Transfer API), or
        with `document` itself when the request carried one (Twilio's `Twiml`)."""
        self._requests.append(("transfer", url, method, document))
        self.interrupted.set()  # ends <Wait>/sleeps and Speak/Play loops; the interpreter clears it
        # the running app only: `uuid_break all` would also drop queued apps (an async <DTMF>'s
        # followers), whose completions then never come
        self.session.break_media()

    def request_hangup(self, end, cause: str = "NORMAL_CLEARING") -> None:
        """End the call now (REST hangup, shutdown): why, for the hangup webhook, then uuid_kill."""
        self._requests.append(("hangup", end))
        self.session.hangup(cause)

    def transfer_requested(self) -> bool:
        return any(r[0] == "transfer" for r in list(self._requests))

    def take_transfer(self):
        """In the call's greenlet: the latest transfer asked for, as (url, method, document or None),
        or None."""
        transfer = None
        for request in self._take("transfer"):
            transfer = request[1:]
        if transfer is not None:
            self.interrupted.clear()
        return transfer

    def take_requested_end(self):
        """In the call's greenlet: the CallEnd a request gave the hangup, else the one a verb chose."""
        for request in self._take("hangup"):
            self.hangup_requested = self.hangup_requested or request[1]
        return self.hangup_requested

    def _take(self, kind: str) -> list:
        taken = [r for r in self._requests if r[0] == kind]
        for r in taken:
            self._requests.remove(r)
        return taken
