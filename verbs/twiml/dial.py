"""TwiML <Dial> (https://www.twilio.com/docs/voice/twiml/dial): ring its <Number>s and <Sip>s (or the
number that is its text) at once, or one after the other with `sequential`, and connect the caller
to the first that answers, on the Dial machinery of Vobiz <Dial> (verbs/dialing.py Dialer); or put
the caller in a <Conference> (verbs/twiml/conference.py).

The caller is answered first and hears a ringback tone (`ringTone`: the tone of that country,
default us) while the legs ring, unless `answerOnBridge`: then it stays unanswered (the callee's
early media reaches it) and the bridge answers it. `timeout` (default 30 s) is each leg's ring time,
`timeLimit` the bridged call's, `callerId` the legs' caller id, `hangupOnStar` lets the caller end
the bridge with `*` (the Dial ends, the caller stays). `record` records the bridged call from the
moment it is connected (verbs/dial_recording.py: both parties, mixed in one channel, or with -dual
the caller left and the callee right; record-from-ringing starts at the connect too, as -answer);
recordingStatusCallback gets `in-progress` and `completed` (recordingStatusCallbackEvent).

When the Dial ends: with `action`, the action URL gets DialCallStatus (completed | busy | no-answer
| failed | canceled), DialCallSid (the connected or last-tried leg's CA sid), DialCallDuration,
DialBridged, and RecordingUrl / RecordingSid / RecordingDuration when recorded, DialSipCallId /
DialSipResponseCode / DialSipHeader_<name> when that leg is a <Sip> (verbs/twiml/sip.py), plus the
call's parameters; its document replaces the rest. Without `action` the next verb runs. The caller
hanging up ends the call; the action URL is still told (its answer is not run).
"""
from __future__ import annotations


from ..base import Attr, Custom, Enum, Int, Text
from ..dial_plan import DialPlan
from ..dial_recording import DialRecording
from ..dialing import run_dial_verb
from ..flow import NextDocument
from ..vobiz.element import BOOL, METHOD
from .element import REL_URL, TwimlVerb, resolve
from .number import PHONE, Number, leg_params, plain_number
from .sip import sip_action_params
from .sids import call_sid, recording_sid, recording_url
from .record import _events as recording_events
from .status_callback import final_status, rfc2822

RECORD = Enum("do-not-record", "record-from-answer", "record-from-ringing", "record-from-answer-dual",
              "record-from-ringing-dual", aliases={"true": "record-from-answer", "false": "do-not-record"},
              case_insensitive=True)
# FreeSWITCH tone specs of the ringback tones Twilio's ringTone names (the common ones)
RING_TONES = {
    "us": "%(2000,4000,440,480)", "ca": "%(2000,4000,440,480)", "us-old": "%(2000,4000,440,480)",
    "uk": "%(400,200,400,450);%(400,2000,400,450)", "au": "%(400,200,400,450);%(400,2000,400,450)",
    "nz": "%(400,200,400,450);%(400,2000,400,450)", "de": "%(1000,4000,425)", "at": "%(1000,5000,420)",
    "ch": "%(1000,4000,425)", "fr": "%(1500,3500,440)", "it": "%(1000,4000,425)", "es": "%(1500,3000,425)",
    "nl": "%(1000,4000,425)", "be": "%(1000,3000,425)", "in": "%(400,200,400,375);%(400,2000,400,375)",
    "jp": "%(1000,2000,400)", "br": "%(1000,4000,425)", "mx": "%(1000,4000,425)", "se": "%(1000,5000,425)",
}
DIAL_STATUS = {"completed": "completed", "busy": "busy", "no-answer": "no-answer", "timeout": "no-answer",
               "cancel": "canceled", "failed": "failed"}


class Dial(TwimlVerb):
    name = "Dial"
    TEXT = "text"
    CHILDREN = ("Number", "Sip", "Conference")
    ATTRIBUTES = (
        Attr("action", "action", REL_URL, None),
        Attr("method", "method", METHOD, "POST"),
        Attr("timeout", "timeout", Int(minimum=5, maximum=600, clamp=True), 30),
        Attr("timeLimit", "time_limit", Int(minimum=1, maximum=14400), 14400),
        Attr("callerId", "caller_id", Text(pattern=r"\+?[0-9]{2,20}|sips?:\S+", pattern_desc="a phone number"),
             None),
        Attr("record", "record", RECORD, "do-not-record"),
        Attr("recordingStatusCallback", "recording_status_callback", REL_URL, None),
        Attr("recordingStatusCallbackMethod", "recording_status_callback_method", METHOD, "POST"),
        Attr("recordingStatusCallbackEvent", "recording_status_callback_event",
             Custom(recording_events, "in-progress completed absent"), ("completed",)),
        Attr("trim", "trim", Text(), None, ignored="callfork keeps the recording's silence"),
        Attr("hangupOnStar", "hangup_on_star", BOOL, False),
        Attr("answerOnBridge", "answer_on_bridge", BOOL, False),
        Attr("ringTone", "ring_tone", Enum(*RING_TONES, case_insensitive=True), None),
        Attr("sequential", "sequential", BOOL, False),
        # Twilio's others: accepted as Twilio accepts what it does not act on, with a warning
        Attr("recordingTrack", "recording_track", Enum("both", "inbound", "outbound"), "both",
             ignored="callfork records both tracks"),
        Attr("events", "events", Text(), None, ignored="call-progress events go to each leg's statusCallback"),
        Attr("referUrl", "refer_url", Text(), None, ignored="callfork does not take SIP REFER"),
        Attr("referMethod", "refer_method", Text(), None, ignored="callfork does not take SIP REFER"),
    )

    @property
    def targets(self) -> list:
        found = [c for c in self.children if c.name in ("Number", "Sip")]
        if self.text:
            found.insert(0, Number(self.line, self.column, text=self.text))
        return found

    @property
    def conference(self):
        return next((c for c in self.children if c.name == "Conference"), None)

    def check(self):
        errors = []
        if self.text and not PHONE.fullmatch(self.text):
            errors.append(f'"{self.text}" is not a phone number')
        if self.conference is not None:
            if len(self.children) > 1 or self.text:
                errors.append("<Conference> must be the only thing <Dial> dials")
        elif not self.targets:
            errors.append("nothing to dial: add <Number>, <Sip> or <Conference> (or the number as text)")
        return errors

    # -- running it -----------------------------------------------------------------------------
    def plan(self) -> DialPlan:
        targets = []
        for position, noun in enumerate(self.targets):
            target = noun.target()
            target.group = position if self.sequential else 0
            targets.append(target)
        tone = RING_TONES.get((self.ring_tone or "").lower())
        return DialPlan(targets, caller_id=plain_number(self.caller_id) if self.caller_id and
                        not self.caller_id.startswith("sip") else None,
                        timeout_s=self.timeout, time_limit_s=self.time_limit, hangup_on_star=self.hangup_on_star,
                        header_prefix="", ringback=True,     # <Sip>'s headers are named X-... already
                        ringback_file=f"tone_stream://{tone};loops=-1" if tone else None)

    def run(self, call):
        if self.conference is not None:
            from .conference import run_conference
            return run_conference(call, self, self.conference)
        if not self.answer_on_bridge:
            call.ensure_answered()
        nouns = self.targets
        legs = LegReports(call, nouns)
        recording = BridgeRecording(call, self) if self.record != "do-not-record" else None

        result = run_dial_verb(call, f"<Dial> line {self.line}", self.plan(),
                               lambda _dialer, kind, leg: legs.on_leg(kind, leg), legs.on_state, recording)
        if not self.action:
            return
        params = self._action_params(call, result, recording)
        action = resolve(call, self.action)
        if result.caller_gone or call.transfer_requested():
            call.post(action, self.method, params, "DialAction")   # told, not followed
            return
        raise NextDocument(action, self.method, params, "action")

    def _action_params(self, call, result, recording) -> dict:
        bridged = result.bridged_leg
        tried = bridged or next((leg for leg in reversed(result.legs) if leg.seen or leg.done), None)
        fields = {"DialCallStatus": DIAL_STATUS.get(result.status, "failed"),
                  "DialCallSid": call_sid(tried.uuid) if tried else "",
                  "DialBridged": "true" if bridged else "false",
                  "DialCallDuration": str(bridged.duration_s) if bridged else "0"}
        if tried is not None and tried.target.kind == "sip":
            fields.update(sip_action_params(tried))
        rec = recording.rec if recording is not None else None
        if rec is not None and rec.finished:
            fields.update(RecordingUrl=recording_url(call.services.public_url, rec.id),
                          RecordingSid=recording_sid(rec.id),
                          RecordingDuration=str(max(0, round(rec.duration_ms / 1000))))
        return call.params(**fields)


class _RecordSpec:
    """What verbs/dial_recording.py reads of a Vobiz <Record>, for a Dial's `record`: a WAV of the
    whole bridge; the Dial's action carries the recording, recordingStatusCallback gets its own."""
    file_format = "wav"
    present = ()
    max_length = 0
    method = callback_method = "POST"
    callback_url = None
    action = None

    def __init__(self, dial: Dial):
        self.line = dial.line
        self.stereo = dial.record.endswith("-dual")      # else one channel, both parties mixed


class BridgeRecording(DialRecording):
    """A Dial's `record`, with Twilio's recordingStatusCallback: `in-progress` when the bridge is
    connected and the recording starts, `completed` when it is finished (RecordingSource DialVerb;
    -dual: two channels, the caller left and the callee right; else one, both mixed)."""

    def __init__(self, call, dial: Dial):
        super().__init__(call, _RecordSpec(dial))
        self.dial = dial

    def start(self) -> None:
        started = self.rec is None
        super().start()
        if started and self.rec is not None:
            self._status("in-progress")

    def stop(self) -> None:
        super().stop()
        if self.rec is not None and self.rec.finished:
            self._status("completed")

    def _status(self, event: str) -> None:
        dial, call, rec = self.dial, self.call, self.rec
        if not dial.recording_status_callback or event not in dial.recording_status_callback_event:
            return
        done = event == "completed"
        params = {"AccountSid": call.auth_id, "CallSid": call_sid(call.uuid), "RecordingSid": recording_sid(rec.id),
                  "RecordingUrl": recording_url(call.services.public_url, rec.id), "RecordingStatus": event,
                  "RecordingDuration": str(max(0, round(rec.duration_ms / 1000))) if done else "0",
                  "RecordingChannels": "2" if self.verb.stereo else "1", "RecordingSource": "DialVerb",
                  "RecordingStartTime": rfc2822(rec.start_ms / 1000), "ErrorCode": "0"}
        call.post(resolve(call, dial.recording_status_callback), dial.recording_status_callback_method, params,
                  f"recording:{event}")


class LegReports:
    """Each leg's statusCallback (its noun's): the Dialer's leg states → Twilio's child-call events."""

    def __init__(self, call, nouns):
        self.call = call
        self.nouns = nouns
        self.callbacks = {}

    def _send(self, leg, event: str, **extra) -> None:
        noun = self.nouns[leg.position - 1]
        status = self.callbacks.get(leg.position)
        if status is None:
            status = self.callbacks[leg.position] = noun.leg_status()
        if status is not None:
            status.send(self.call.post, leg_params(self.call, leg), event, **extra)

    def on_state(self, kind, leg) -> None:
        if kind in ("created", "ringing"):
            self._send(leg, "initiated" if kind == "created" else "ringing")

    def on_leg(self, kind, leg) -> None:
        if kind == "answer":
            self._send(leg, "answered")
        elif kind == "hangup":
            answered = leg.answered_at is not None
            # a leg's own ring timeout (leg_timeout) ends it with ALLOTTED_TIMEOUT: not answered
            code = {"USER_BUSY": 3010, "NO_ANSWER": 3000, "ALLOTTED_TIMEOUT": 6010, "PROGRESS_TIMEOUT": 6010,
                    "ORIGINATOR_CANCEL": 1000, "LOSE_RACE": 1000}.get(leg.hangup_cause, 0)
            self._send(leg, "completed", CallStatus=final_status(answered, code),
                       CallDuration=str(leg.duration_s))
