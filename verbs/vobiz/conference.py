"""<Conference>: join a named room (the element's text). Parsed; running it is not supported yet."""
from ..base import Attr, Enum, Int, Text
from ..errors import NotSupportedError
from .element import BOOL, HTTP_URL, METHOD, VobizVerb

TRANSCRIPTION = "SDK-only (Plivo) attribute; not used by Vobiz"


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
        Attr("floorEvent", "floor_event", BOOL, False),
        Attr("redirect", "redirect", BOOL, True),
        Attr("sendDigits", "send_digits", Text(), None),
        Attr("recordWhenAlone", "record_when_alone", BOOL, False),
        Attr("transcriptionType", "transcription_type", Text(), None, ignored=TRANSCRIPTION),
        Attr("transcriptionUrl", "transcription_url", HTTP_URL, None, ignored=TRANSCRIPTION),
        Attr("transcriptionMethod", "transcription_method", METHOD, "POST", ignored=TRANSCRIPTION),
    )

    @property
    def room(self) -> str:
        return self.text

    def run(self, call):
        raise NotSupportedError("<Conference> is not supported by callfork yet", self.line, self.column,
                                self.name)
