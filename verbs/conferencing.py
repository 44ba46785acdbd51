"""What a `<Conference>` does on a call (verbs/vobiz/conference.py runs it): the member's way
through mod_conference, and the room names callfork gives FreeSWITCH.

Rooms: a Vobiz room name is the element's text, any text; FreeSWITCH's room is
`cf_<auth_id>_<room>` with every character but letters, digits and '-' written as `.XX` (hex of its
UTF-8 bytes), so that no two accounts or rooms of callfork meet, nor meet other FreeSWITCH users'
rooms, and the name survives the `conference` app's `@`/`+` syntax and the API's spaces
(`fs_room_name`, `vobiz_room_name`).

A member (`ConferenceMember.run`), on the caller's channel through its outbound socket:
1. channel variables: `conference_controls=none` (digits are callfork's), `hangup_after_conference=false`
   (a destroyed room does not hang the member up: the elements after </Conference> run),
   `conference_max_members` (maxMembers / maxParticipants), `conference_flags=wait-mod` when
   startConferenceOnEnter is false (both read when the room is created), `conference_enter_sound` /
   `conference_exit_sound` (enterSound / exitSound: `beep:1`, `beep:2` or an http(s) audio URL;
   with beep="false" and no sound given, silence);
2. `conference <room>@default+flags{...}` runs asynchronously: `mute` (muted), `moderator`
   (startConferenceOnEnter), `endconf` (endConferenceOnExit), `mintwo` (stayAlone="false": once the
   room had two members, the last one left alone is put out), `dist-dtmf` (relayDTMF);
3. the member's `conference::maintenance` events come on the call's own socket (subscribed with
   `event json CUSTOM conference::maintenance`): add-member gives the member id and the room's
   uuid and size (the enter callback: ConferenceFirstMember), del-member the size after the leave
   (the exit callback: ConferenceLastMember). The waitSound document's Play and Wait become the
   room's music on hold once the member is in (`conference <room> moh file_string://...`: the
   profile's moh-sound would win over `conference_moh_sound`), which FreeSWITCH plays while a member
   is alone or the room waits for a moderator. No add-member before the app returns: the room was
   full (FreeSWITCH sends no event for that), an error in the log and the call record, the next
   elements run;
4. while a member: DTMF events drive hangupOnStar (`*` kicks the member) and digitsMatch (the
   digits pressed so far, matched against each comma-separated pattern: a callback with
   ConferenceAction=digits, Event=ConferenceDigitsMatch, ConferenceDigitsMatch); timeLimit and a
   REST transfer kick the member (mod_conference ignores uuid_break); record records the room
   from the member's join to its leave (verbs/conference_recording.py: WAV, or MP3 as
   recordFileFormat says);
5. after the leave: the action URL (ConferenceName, ConferenceUUID, ConferenceMemberID, RecordUrl
   when recording) is fetched and replaces the document when redirect is true, else posted.
The caller hanging up ends the member too: the exit callback is still posted, then CallGone.
"""
from __future__ import annotations

import re
import time

from esl_app import CallGone, ESLError, ESLTimeout

from .conference_recording import MemberRecording
from .digit_patterns import DigitMatcher
from .flow import NextDocument
from .sound_document import sound_file_string

PREFIX = "cf_"
PROFILE = "default"
SUBCLASS = "conference::maintenance"
BEEPS = {"beep:1": "tone_stream://%(300,200,700)", "beep:2": "tone_stream://L=2;%(300,200,700)"}
NO_SOUND = "silence_stream://20"
_KEEP = re.compile(r"[A-Za-z0-9-]")
_HEX = re.compile(r"\.([0-9a-f]{2})")
MAX_MOH_LOOPS = 100          # a waitSound <Play loop="0"> repeats this many times


class ConferenceError(Exception):
    """A <Conference> that cannot run as asked (logged once with the call UUID by the verb)."""


def _encode(text: str) -> str:
    out = []
    for ch in text:
        if _KEEP.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f".{b:02x}" for b in ch.encode("utf-8"))
    return "".join(out)


def fs_room_name(auth_id: str, room: str) -> str:
    """The FreeSWITCH room of an account's Vobiz room."""
    return f"{PREFIX}{_encode(auth_id)}_{_encode(room)}"


def vobiz_room_name(auth_id: str, fs_name: str) -> str | None:
    """The Vobiz room name of a FreeSWITCH room of this account, or None (not ours)."""
    head = f"{PREFIX}{_encode(auth_id)}_"
    if not fs_name.startswith(head):
        return None
    encoded = fs_name[len(head):]
    try:
        raw = bytearray()
        i = 0
        while i < len(encoded):
            m = _HEX.match(encoded, i)
            if m:
                raw.append(int(m.group(1), 16))
                i = m.end()
            elif _KEEP.fullmatch(encoded[i]):
                raw.extend(encoded[i].encode())
                i += 1
            else:
                return None
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def member_flags(verb) -> list[str]:
    flags = []
    if verb.muted:
        flags.append("mute")
    if verb.start_conference_on_enter:
        flags.append("moderator")
    if verb.end_conference_on_exit:
        flags.append("endconf")
    if not verb.stay_alone:
        flags.append("mintwo")
    if verb.relay_dtmf:
        flags.append("dist-dtmf")
    return flags


class ConferenceMember:
    """One run of a <Conference> element on a call (the module docstring says what it does)."""

    def __init__(self, call, verb):
        self.call = call
        self.verb = verb
        self.room = fs_room_name(call.auth_id, verb.room)
        self.member_id = None
        self.conference_uuid = ""
        self.recording = None
        self.digits = DigitMatcher(verb.digits_match)
        self.moh = None

    # -- the member's way --------------------------------------------------------------------
    def run(self) -> None:
        call, verb = self.call, self.verb
        call.ensure_answered()
        session = call.session
        if not getattr(call, "_conference_events", False):
            session.add_events("CUSTOM", SUBCLASS)
            call._conference_events = True
        self._set_variables()
        self.moh = self._wait_sound()
        queue = session.subscribe(SUBCLASS, "DTMF")
        left = None
        try:
            target = f"{self.room}@{PROFILE}+flags{{{'|'.join(member_flags(verb))}}}"
            execution = session.execute_async("conference", target)
            call.timeline("conference_join", {"room": verb.room})
            joined = self._wait_joined(queue, execution)
            if joined is None:
                call.error(f"<Conference> line {verb.line}: room {verb.room!r} is full "
                           f"(maxMembers); the next elements run")
                return
            self._entered(joined)
            try:
                left = self._stay(queue, execution)
            except CallGone:
                left = self._left_on_hangup(queue)
                self._exited(left)
                self._stop_recording(hung_up=True)
                raise
            self._exited(left)
            hung_up = session.gone or (left is not None and bool(left.get("Hangup-Cause")))
            self._stop_recording(hung_up)
            if hung_up:
                # the caller hung up: FreeSWITCH fired CHANNEL_HANGUP before the del-member,
                # which was already queued when the call went
                raise CallGone(session.hangup_cause or left.get("Hangup-Cause"), call.uuid)
        finally:
            queue.close()
        if call.interrupted.is_set():
            return          # a REST transfer took the member out: its document runs, not the action
        self._action()

    def _set_variables(self) -> None:
        verb, session = self.verb, self.call.session
        values = {"conference_controls": "none", "hangup_after_conference": "false",
                  "conference_flags": "" if verb.start_conference_on_enter else "wait-mod",
                  "conference_max_members": str(verb.max_participants) if verb.max_participants else "",
                  "conference_enter_sound": self._sound(verb.enter_sound, "enterSound"),
                  "conference_exit_sound": self._sound(verb.exit_sound, "exitSound")}
        for name, value in values.items():
            session.set_var(name, value)

    def _sound(self, value, attribute: str) -> str:
        """A member's enter/exit sound: beep:1|beep:2, an http(s) audio URL; the profile's tone
        when none is given and beep is true; silence when beep is false."""
        if not value:
            return "" if self.verb.beep else NO_SOUND
        if value in BEEPS:
            return BEEPS[value]
        if value.startswith(("http://", "https://")):
            try:
                return str(self.call.services.media_file(value))
            except Exception as exc:
                self.call.error(f"<Conference> line {self.verb.line}: {attribute} {value} skipped: {exc}")
                return NO_SOUND
        self.call.error(f"<Conference> line {self.verb.line}: {attribute}={value!r} is not beep:1, beep:2 "
                        f"or an http(s) URL; no sound")
        return NO_SOUND

    def _wait_sound(self) -> str | None:
        """The waitSound document's <Play> and <Wait> as one `file_string://` (what FreeSWITCH
        plays to the room while the member waits)."""
        verb, call = self.verb, self.call
        if not verb.wait_sound:
            return None
        params = call.params(ConferenceAction="waitSound", Event="ConferenceRemoteSounds",
                             ConferenceName=verb.room)
        return sound_file_string(call, verb.wait_sound, params, f"<Conference> line {verb.line} waitSound",
                                 endless_loops=MAX_MOH_LOOPS)

    def _wait_joined(self, queue, execution):
        """The add-member event of this channel, or None when the app returned first (refused)."""
        while True:
            if execution.done:
                # the event may still be queued behind the completion
                event = self._next(queue, 0)
                while event is not None:
                    if self._is_mine(event, "add-member"):
                        return event
                    event = self._next(queue, 0)
                return None
            event = self._next(queue, 0.1)
            if event is not None and self._is_mine(event, "add-member"):
                return event

    def _stay(self, queue, execution):
        """Until the member leaves: its del-member event (or the app's end). Returns the event."""
        verb, call = self.verb, self.call
        deadline = time.monotonic() + verb.time_limit
        kicked = False
        while True:
            event = self._next(queue, 0.1)
            if event is not None:
                if self._is_mine(event, "del-member"):
                    return event
                if event.name == "DTMF":
                    self._digit(event.get("DTMF-Digit", ""))
            elif execution.done:
                return None
            if not kicked and (time.monotonic() >= deadline or call.interrupted.is_set()):
                kicked = True
                self.kick("time limit" if time.monotonic() >= deadline else "interrupted")

    def _left_on_hangup(self, queue):
        """The caller hung up: its del-member arrives before CHANNEL_HANGUP_COMPLETE."""
        self.call.session.wait_hangup_complete(timeout=2)
        while True:
            try:
                event = queue.get(timeout=0)
            except (CallGone, ESLTimeout, ESLError):
                return None
            if self._is_mine(event, "del-member"):
                return event

    @staticmethod
    def _next(queue, timeout):
        try:
            return queue.get(timeout=timeout)
        except ESLTimeout:
            return None

    def _is_mine(self, event, action: str) -> bool:
        return (event.subclass == SUBCLASS and event.get("Action") == action
                and event.get("Unique-ID") == self.call.uuid and event.get("Conference-Name") == self.room)

    def _room_api(self, command: str, what: str) -> str:
        try:
            reply = self.call.session.api(f"conference {self.room} {command}")
        except (ESLError, ESLTimeout) as exc:
            reply = f"-ERR {exc}"
        if not reply.startswith("+OK"):
            self.call.error(f"<Conference> line {self.verb.line}: {what}: FreeSWITCH said {reply.strip()!r}")
        return reply

    def kick(self, why: str) -> None:
        try:
            self.call.session.api(f"conference {self.room} kick {self.member_id}")
        except (ESLError, ESLTimeout) as exc:
            self.call.error(f"<Conference> line {self.verb.line}: could not take the member out ({why}): {exc}")
        self.call.timeline("conference_kick", {"room": self.verb.room, "why": why})

    def _digit(self, digit: str) -> None:
        verb = self.verb
        if verb.hangup_on_star and digit == "*":
            self.kick("hangupOnStar")
            return
        if not verb.callback_url:
            return
        pattern = self.digits.press(digit)
        if pattern is not None:
            self._callback("digits", "ConferenceDigitsMatch", {"ConferenceDigitsMatch": pattern})

    # -- callbacks ---------------------------------------------------------------------------
    def _entered(self, event) -> None:
        self.member_id = event.get("Member-ID")
        self.conference_uuid = event.get("Conference-Unique-ID", "")
        self.call.timeline("conference_enter", {"room": self.verb.room, "member_id": self.member_id})
        if self.moh:
            self._room_api(f"moh {self.moh}", "waitSound")
        if self.verb.record:
            self._start_recording()
        call = self.call
        self._callback("enter", "ConferenceEnter", {
            "ConferenceFirstMember": "true" if event.get("Conference-Size") == "1" else "false",
            "From": call.from_number, "To": call.to_number, "Direction": call.direction,
            "CallStatus": call.call_status()})

    def _exited(self, event) -> None:
        last = event is not None and event.get("Conference-Size") == "0"
        self.call.timeline("conference_exit", {"room": self.verb.room, "member_id": self.member_id})
        self._callback("exit", "ConferenceExit", {"ConferenceLastMember": "true" if last else "false"})

    def _callback(self, action: str, event_name: str, extra: dict) -> None:
        verb = self.verb
        if not verb.callback_url:
            return
        params = {"ConferenceAction": action, "Event": event_name, "ConferenceUUID": self.conference_uuid,
                  "ConferenceName": verb.room, "ConferenceMemberID": self.member_id or "",
                  "CallUUID": self.call.uuid}
        params.update(extra)
        self.call.post(verb.callback_url, verb.callback_method, params, event_name)

    def _start_recording(self) -> None:
        verb = self.verb
        self.recording = MemberRecording(self.call, self.room, f"<Conference> line {verb.line}",
                                         verb.record_file_format)
        self.recording.start()

    def _stop_recording(self, hung_up: bool) -> None:
        if self.recording is not None:
            self.recording.stop(hung_up)

    def _action(self) -> None:
        verb, call = self.verb, self.call
        if not verb.action:
            return
        params = call.params(ConferenceName=verb.room, ConferenceUUID=self.conference_uuid,
                             ConferenceMemberID=self.member_id or "")
        if self.recording is not None and self.recording.url:
            params["RecordUrl"] = self.recording.url
        if verb.redirect:
            raise NextDocument(verb.action, verb.method, params, "action")
        call.post(verb.action, verb.method, params, "ConferenceAction")
