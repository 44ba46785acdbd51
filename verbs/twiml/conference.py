"""TwiML <Dial><Conference> (https://www.twilio.com/docs/voice/twiml/conference): the caller joins the
room named by the text, on the member machinery of Vobiz <Conference> (verbs/conferencing.py,
mod_conference), until it leaves (hangupOnStar's `*`, the Dial's timeLimit, endConferenceOnExit of
another member, a REST kick); then the Dial's action, when given, gets the call's parameters and its
document replaces the rest, else the next verb runs.

Attributes: muted, beep (true | false | onEnter | onExit), startConferenceOnEnter,
endConferenceOnExit, maxParticipants, waitUrl (an audio file, or a document of <Play>s read
as verbs/sound_document.py reads one, fetched with POST: the room's music on hold; none: the
profile's; the empty string: none at all, as on Twilio), record (record-from-start:
the room from this member's join to its leave, WAV), statusCallback / statusCallbackMethod /
statusCallbackEvent: `start` (the room started: the first member that starts it joined), `end`
(the last member left: the one whose leave emptied the room posts it), `join`, `leave`, each with ConferenceSid
(`CF` + mod_conference's room UUID hex), FriendlyName, StatusCallbackEvent (conference-start,
conference-end, participant-join, participant-leave), CallSid, Muted, Hold, StartConferenceOnEnter,
EndConferenceOnExit, SequenceNumber, Timestamp. `mute` and `hold` are accepted; callfork has no
TwiML way to mute or hold a member yet, so they are never sent.
"""
from __future__ import annotations

import re

from ..base import Attr, AttrError, Custom, Enum, Int, Text
from ..conferencing import MAX_MOH_LOOPS, ConferenceMember
from ..flow import NextDocument
from ..sound_document import sound_file_string
from ..vobiz.element import BOOL, HTTP_URL, METHOD
from .element import REL_URL, TwimlVerb, resolve
from .sids import call_sid, recording_sid, recording_url, sid
from .status_callback import rfc2822

CONFERENCE_EVENTS = ("start", "end", "join", "leave", "mute", "hold", "modify", "speaker", "announcement")
AUDIO_FILE = re.compile(r"\.(wav|mp3|ul|ulaw|aif|aiff|gsm)$", re.I)


def _wait_url(raw, warnings):
    """waitUrl: a URL as REL_URL takes it, or the empty string: no music while the member waits
    (Twilio's documented value for silence)."""
    if isinstance(raw, str) and not raw.strip():
        return ""
    return REL_URL.parse(raw, warnings)


def _events(raw, warnings):
    words = str(raw).replace(",", " ").split()
    bad = [w for w in words if w not in CONFERENCE_EVENTS]
    if bad:
        raise AttrError(f"{bad[0]!r} is not one of {', '.join(CONFERENCE_EVENTS)}")
    return tuple(words)


class Conference(TwimlVerb):
    name = "Conference"
    TEXT = "text"
    TEXT_REQUIRED = True
    ATTRIBUTES = (
        Attr("muted", "muted", BOOL, False),
        Attr("beep", "beep", Enum("true", "false", "onEnter", "onExit", case_insensitive=True), "true"),
        Attr("startConferenceOnEnter", "start_conference_on_enter", BOOL, True),
        Attr("endConferenceOnExit", "end_conference_on_exit", BOOL, False),
        Attr("maxParticipants", "max_participants", Int(minimum=2, maximum=250), 250),
        Attr("waitUrl", "wait_url", Custom(_wait_url, "absolute or relative URL, or empty: no music"), None),
        Attr("waitMethod", "wait_method", METHOD, "POST"),
        Attr("record", "record", Enum("do-not-record", "record-from-start"), "do-not-record"),
        Attr("statusCallback", "status_callback", HTTP_URL, None),
        Attr("statusCallbackMethod", "status_callback_method", METHOD, "POST"),
        Attr("statusCallbackEvent", "status_callback_event", Custom(_events, " ".join(CONFERENCE_EVENTS)), ()),
        Attr("trim", "trim", Text(), None, ignored="callfork keeps the recording's silence"),
        Attr("region", "region", Text(), None, ignored="callfork has one region: its FreeSWITCH"),
        Attr("participantLabel", "participant_label", Text(), None),
        Attr("jitterBufferSize", "jitter_buffer_size", Text(), None, ignored="FreeSWITCH's jitter buffer decides"),
        Attr("recordingStatusCallback", "recording_status_callback", Text(), None,
             ignored="callfork posts no conference recording callback (the RecordingUrl is in Dial's action)"),
        Attr("recordingStatusCallbackMethod", "recording_status_callback_method", Text(), None,
             ignored="callfork posts no conference recording callback"),
        Attr("recordingStatusCallbackEvent", "recording_status_callback_event", Text(), None,
             ignored="callfork posts no conference recording callback"),
        Attr("coach", "coach", Text(), None, ignored="coaching is not supported by callfork"),
        Attr("eventCallbackUrl", "event_callback_url", Text(), None, ignored="use statusCallback"),
    )

    @property
    def room(self) -> str:
        return self.text


class _MemberSpec:
    """What verbs/conferencing.py reads of a Vobiz <Conference>, for a TwiML <Dial><Conference>."""
    stay_alone = True
    relay_dtmf = False
    digits_match = None
    callback_url = None
    callback_method = "POST"
    wait_sound = None
    record_file_format = "wav"
    redirect = True

    def __init__(self, dial, noun: Conference):
        self.line, self.room = noun.line, noun.room
        self.muted, self.max_participants = noun.muted, noun.max_participants
        self.start_conference_on_enter = noun.start_conference_on_enter
        self.end_conference_on_exit = noun.end_conference_on_exit
        beep = noun.beep.lower()
        self.beep = beep == "true"
        self.enter_sound = "beep:1" if beep == "onenter" else None
        self.exit_sound = "beep:1" if beep == "onexit" else None
        self.record = noun.record == "record-from-start"
        self.hangup_on_star, self.time_limit = dial.hangup_on_star, dial.time_limit
        self.action, self.method = dial.action, dial.method   # resolved when the member leaves


class TwimlMember(ConferenceMember):
    """A member whose callbacks are Twilio's conference status callbacks and whose action is the Dial's."""

    def __init__(self, call, dial, noun: Conference):
        super().__init__(call, _MemberSpec(dial, noun))
        self.noun = noun
        self.sequence = 0

    @property
    def conference_sid(self) -> str:
        """`CF` + the hex of mod_conference's room UUID (empty before the member joined)."""
        try:
            return sid("CF", self.conference_uuid)
        except ValueError:
            return ""

    def _wait_sound(self):
        noun, call = self.noun, self.call
        if noun.wait_url == "":
            return "off"      # `conference <room> moh off`: the room waits in silence
        if not noun.wait_url:
            return None
        what = f"<Conference> line {noun.line} waitUrl"
        url = resolve(call, noun.wait_url)
        if AUDIO_FILE.search(url.split("?")[0]):
            try:
                path = str(call.services.media_file(url))
            except Exception as exc:
                call.error(f"{what} {url}: {exc}")
                return None
            return "file_string://" + "!".join([path] * MAX_MOH_LOOPS)
        return sound_file_string(call, url, call.params(), what, endless_loops=MAX_MOH_LOOPS)

    def _callback(self, action: str, event_name: str, extra: dict) -> None:
        verb = self.verb
        if action == "enter":
            first = extra.get("ConferenceFirstMember") == "true"
            if first and verb.start_conference_on_enter:
                self._status("start", "conference-start")
            self._status("join", "participant-join")
        elif action == "exit":
            self._status("leave", "participant-leave")
            if extra.get("ConferenceLastMember") == "true":     # the room is empty: it has ended
                self._status("end", "conference-end")

    def _status(self, event: str, name: str) -> None:
        noun, call = self.noun, self.call
        if not noun.status_callback or event not in noun.status_callback_event:
            return
        params = {"AccountSid": call.auth_id, "CallSid": call_sid(call.uuid),
                  "ConferenceSid": self.conference_sid,
                  "FriendlyName": noun.room, "StatusCallbackEvent": name, "Muted": str(noun.muted).lower(),
                  "Hold": "false", "Coaching": "false",
                  "StartConferenceOnEnter": str(noun.start_conference_on_enter).lower(),
                  "EndConferenceOnExit": str(noun.end_conference_on_exit).lower(),
                  "SequenceNumber": str(self.sequence), "Timestamp": rfc2822()}
        if noun.participant_label:
            params["ParticipantLabel"] = noun.participant_label
        self.sequence += 1
        call.post(noun.status_callback, noun.status_callback_method, params, f"conference:{name}")

    def _action(self) -> None:
        verb, call = self.verb, self.call
        if not verb.action:
            return
        fields = {"DialCallStatus": "completed", "ConferenceSid": self.conference_sid}
        rec = self.recording.rec if self.recording is not None else None
        if rec is not None:
            fields.update(RecordingUrl=recording_url(call.services.public_url, rec.id),
                          RecordingSid=recording_sid(rec.id))
        raise NextDocument(resolve(call, verb.action), verb.method, call.params(**fields), "action")


def run_conference(call, dial, noun: Conference) -> None:
    call.ensure_answered()
    TwimlMember(call, dial, noun).run()
