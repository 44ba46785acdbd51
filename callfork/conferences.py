"""The Conference REST API's service side: what each request does on FreeSWITCH, through the control
connection's `api conference ...` (callfork/conference_api.py has the routes and the JSON).

Only this account's rooms are seen (verbs/conferencing.py names them). A room's members come from
`conference <room> json_list`; their From / To / direction from callfork's call records.
`Member` actions take `all` or comma-separated member ids: ids the room does not have are
`MemberNotFound`. Hang up (a member, or a whole room) ends the members' calls (`uuid_kill`; their
exit callbacks follow); kick takes them out of the room and their documents go on after the
</Conference>; mute, deaf, play, speak act on them in the room (speech: callfork/conference_speech.py).
A room's recordings belong to the room (callfork/room_recordings.py): the REST API stops them
whoever started them, a <Conference record> member's too.
"""
from __future__ import annotations

import json
import logging
import time
import uuid as uuidlib

from verbs import fs_room_name, vobiz_room_name

from .conference_speech import MemberSpeech, SpeechFailed, room_command, speakable
from .room_recordings import RoomRecordingFailed, RoomRecordings

log = logging.getLogger("callfork.conference")


class ConferenceNotFound(Exception):
    pass


class MemberNotFound(Exception):
    pass


class ConferenceFailed(Exception):
    """FreeSWITCH refused or did not answer (the message says what it said)."""


class Conferences:
    def __init__(self, service):
        self.service = service
        self.auth_id = service.config.server.auth_id

    # -- reading -----------------------------------------------------------------------------
    def _api(self, command: str) -> str:
        control = self.service.control
        if control is None or not control.connected:
            raise ConferenceFailed("FreeSWITCH is not connected")
        try:
            return control.api(command)
        except Exception as exc:
            raise ConferenceFailed(f"{command.split(' ', 2)[:2]}: {exc}") from None

    def names(self) -> list[str]:
        """This account's live rooms (Vobiz names)."""
        out = []
        for line in self._api("conference list").splitlines():
            if not line.startswith("+OK Conference "):
                continue
            fs_name = line[len("+OK Conference "):].split(" (", 1)[0]
            name = vobiz_room_name(self.auth_id, fs_name)
            if name is not None:
                out.append(name)
        return sorted(out)

    def room(self, name: str) -> dict:
        """The room as FreeSWITCH's json_list gives it (ConferenceNotFound if it is not live)."""
        reply = self._api(f"conference {fs_room_name(self.auth_id, name)} json_list")
        if reply.startswith("-ERR"):
            raise ConferenceNotFound(name)
        try:
            rooms = json.loads(reply)
        except ValueError:
            raise ConferenceFailed(f"unreadable json_list: {reply[:80]!r}") from None
        if not rooms:
            raise ConferenceNotFound(name)
        return rooms[0]

    def get(self, name: str) -> dict:
        room = self.room(name)
        members = []
        for m in room.get("members", []):
            if m.get("type") != "caller":
                continue
            call = self.service.store.get_call(m.get("uuid")) or {}
            flags = m.get("flags") or {}
            members.append({
                "muted": not flags.get("can_speak", True), "member_id": str(m.get("id")),
                "deaf": not flags.get("can_hear", True), "from": call.get("from_number") or "",
                "to": call.get("to_number") or "", "caller_name": m.get("caller_id_name") or "",
                "direction": call.get("direction") or "", "call_uuid": m.get("uuid") or "",
                "join_time": str(m.get("join_time", 0))})
        return {"conference_name": name, "conference_run_time": str(room.get("run_time", 0)),
                "conference_member_count": str(len(members)), "members": members}

    def _members(self, name: str, member_ids: str) -> list[dict]:
        """The members `member_ids` names (`all`, or ids separated by commas)."""
        members = {str(m.get("id")): m for m in self.room(name).get("members", []) if m.get("type") == "caller"}
        if member_ids.strip().lower() == "all":
            return list(members.values())
        wanted = [i.strip() for i in member_ids.split(",") if i.strip()]
        missing = [i for i in wanted if i not in members]
        if missing or not wanted:
            raise MemberNotFound(",".join(missing) or member_ids)
        return [members[i] for i in wanted]

    # -- acting ------------------------------------------------------------------------------
    def member_action(self, name: str, member_ids: str, action: str) -> list[str]:
        """mute, unmute, deaf, undeaf, kick (FreeSWITCH's), or hangup (the members' calls end)."""
        room = fs_room_name(self.auth_id, name)
        members = self._members(name, member_ids)
        done = []
        for m in members:
            if action == "hangup":
                reply = self._api(f"uuid_kill {m.get('uuid')}")
            else:
                reply = self._api(f"conference {room} {action} {m.get('id')}")
            if not reply.startswith("+OK"):
                log.warning("conference %s: %s %s: %s", name, action, m.get("id"), reply.strip())
                continue
            done.append(str(m.get("id")))
        return done

    def hangup_all(self, name: str) -> int:
        return len(self.member_action(name, "all", "hangup"))

    def hangup_every_room(self) -> int:
        return sum(self.hangup_all(name) for name in self.names())

    def play(self, name: str, member_ids: str, url: str) -> list[str]:
        room = fs_room_name(self.auth_id, name)
        members = self._members(name, member_ids)
        path = self.service.media.local_file(url)      # raises on a URL that is not audio
        if member_ids.strip().lower() == "all":
            reply = self._api(f"conference {room} play {path}")
            if not reply.startswith("+OK"):
                raise ConferenceFailed(reply.strip())
            return [str(m.get("id")) for m in members]
        done = []
        for m in members:
            reply = self._api(f"conference {room} play {path} {m.get('id')}")
            if reply.startswith("+OK"):
                done.append(str(m.get("id")))
        return done

    def speak(self, name: str, member_ids: str, text: str, voice: str) -> list[str]:
        """Speak `text` with flite's `voice` into the room (`all`) or to the members named only
        (callfork/conference_speech.py says how, on a profile without a tts-engine)."""
        room = fs_room_name(self.auth_id, name)
        members = self._members(name, member_ids)
        words = speakable(text)
        if not words:
            raise ConferenceFailed("nothing to speak")
        if member_ids.strip().lower() == "all":
            reply = self._api(room_command(room, words, voice))
            if not reply.startswith("+OK"):
                raise ConferenceFailed(reply.strip().splitlines()[0] if reply.strip() else "no reply")
            return [str(m.get("id")) for m in members]
        ids = [str(m.get("id")) for m in members]
        try:
            MemberSpeech(self._api, self.service.recordings_dir).start(room, ids, words, voice)
        except SpeechFailed as exc:
            raise ConferenceFailed(str(exc)) from None
        return ids

    def record_start(self, name: str, file_format: str = "wav", callback_url: str = "",
                     callback_method: str = "POST", api_id: str = "") -> tuple[str, str]:
        """Record the room into recordings_dir as `file_format` (wav or mp3, which FreeSWITCH writes
        itself: mod_shout); the recording belongs to the room (callfork/room_recordings.py) and when
        it ends, however, `callback_url` gets Plivo's conference record callback fields. Returns
        (recording_id, its URL)."""
        room = fs_room_name(self.auth_id, name)
        conference_uuid = self.room(name).get("conference_uuid") or ""
        recording_id = str(uuidlib.uuid4())
        path = self.service.recordings_dir / f"{recording_id}.{file_format}"
        url = f"{self.service.config.server.public_url.rstrip('/')}/recordings/{recording_id}.{file_format}"
        start_ms = int(time.time() * 1000)
        store = self.service.store

        def stopped(elapsed_ms):
            end_ms = int(time.time() * 1000)
            duration_ms = elapsed_ms if elapsed_ms is not None else end_ms - start_ms
            try:
                store.update_recording(recording_id, duration_ms=duration_ms, start_ms=end_ms - duration_ms,
                                       end_ms=end_ms, end_reason="RecordingStopped")
            except Exception:
                log.exception("conference %s: could not store the recording's end", name)
            if callback_url:
                params = {"api_id": api_id, "record_url": url, "recording_id": recording_id,
                          "conference_name": name, "recording_duration": int(round(duration_ms / 1000)),
                          "recording_duration_ms": duration_ms, "recording_start_ms": end_ms - duration_ms,
                          "recording_end_ms": end_ms}
                self.service.outbox.enqueue(conference_uuid or recording_id, callback_url, callback_method, params,
                                            event="ConferenceRecordStop")

        try:
            store.add_recording(recording_id, conference_uuid, path=str(path), format=file_format, start_ms=start_ms)
        except Exception:
            log.exception("conference %s: could not store the recording", name)
        try:
            RoomRecordings.of(self.service).start(room, str(path), stopped)
        except RoomRecordingFailed as exc:
            raise ConferenceFailed(str(exc)) from None
        return recording_id, url

    def record_stop(self, name: str) -> None:
        """Stop the room's recordings, whoever started them (each then finishes and calls back)."""
        room = fs_room_name(self.auth_id, name)
        self.room(name)
        try:
            RoomRecordings.of(self.service).stop_room(room)
        except RoomRecordingFailed as exc:
            raise ConferenceFailed(str(exc)) from None
