"""<Conference>: join a named room (the element's text) on mod_conference; the elements after it
run when the member leaves. What a member does is verbs/conferencing.py; this module is the
element: its attributes (vobiz.md §2.11: Vobiz's, and the Plivo SDK's maxMembers, floorEvent,
redirect, sendDigits, recordWhenAlone, which are accepted) and its run."""
from ..base import Attr, Enum, Int, Text
from ..conferencing import ConferenceMember
from .element import BOOL, HTTP_URL, METHOD, VobizVerb

TRANSCRIPTION = "SDK-only (Plivo) attribute; not used by Vobiz"
SDK_ONLY = "SDK-only (Plivo) attribute; callfork does not act on it"


class Conference(VobizVerb):
    name = "Conference"
    TEXT = "text"
    TEXT_REQUIRED = True
    ATTRIBUTES = (
        Attr("muted", "muted", BOOL, False),
        Attr("beep", "beep", BOOL, True),
        Attr("startConferenceOnEnter", "start_conference_on_enter", BOOL, True),
        Attr("endConferenceOnExit", "end_conference_on_exit", BOOL, False),
        Attr("maxParticipants", "max_participants", Int(minimum=1), None, aliases=("maxMembers",)),
        Attr("stayAlone", "stay_alone", BOOL, False),
        Attr("enterSound", "enter_sound", Text(), None),
        Attr("exitSound", "exit_sound", Text(), None),
        Attr("relayDTMF", "relay_dtmf", BOOL, False),
        Attr("digitsMatch", "digits_match", Text(), None),
        Attr("hangupOnStar", "hangup_on_star", BOOL, False),
        Attr("waitSound", "wait_sound", HTTP_URL, None),
        Attr("waitMethod", "wait_method", METHOD, "POST", ignored="not implemented by Vobiz"),
        Attr("callbackUrl", "callback_url", HTTP_URL, None),
        Attr("callbackMethod", "callback_method", METHOD, "POST"),
        Attr("record", "record", BOOL, False),
        Attr("recordFileFormat", "record_file_format", Enum("mp3", "wav"), "mp3"),
        Attr("timeLimit", "time_limit", Int(minimum=1), 14400),
        Attr("action", "action", HTTP_URL, None),
        Attr("method", "method", METHOD, "POST"),
        Attr("floorEvent", "floor_event", BOOL, False, ignored=SDK_ONLY),
        Attr("redirect", "redirect", BOOL, True),
        Attr("sendDigits", "send_digits", Text(), None, ignored=SDK_ONLY),
        Attr("recordWhenAlone", "record_when_alone", BOOL, False, ignored=SDK_ONLY),
        Attr("transcriptionType", "transcription_type", Text(), None, ignored=TRANSCRIPTION),
        Attr("transcriptionUrl", "transcription_url", HTTP_URL, None, ignored=TRANSCRIPTION),
        Attr("transcriptionMethod", "transcription_method", METHOD, "POST", ignored=TRANSCRIPTION),
    )

    @property
    def room(self) -> str:
        return self.text

    def run(self, call):
        """Join the room until the member leaves (kicked, hung up by the REST API, the room ended,
        alone with stayAlone="false", `*` with hangupOnStar, timeLimit); the caller hanging up
        raises CallGone after the exit callback."""
        ConferenceMember(call, self).run()
