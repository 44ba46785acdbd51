"""The recordings of conference rooms that callfork started (`RoomRecordings`, one per service:
`RoomRecordings.of(service)`): they belong to the room, not to whoever started them.

A room recording is `conference <room> recording start <path>` (mod_sndfile writes a .wav, mod_shout
an .mp3, by the file's extension). It ends with `conference <room> recording stop <path>|all`
(whoever sends it: the member who started it when it leaves, the REST API's DELETE .../Record/) or
with the room. Either way FreeSWITCH closes the file and only then fires `stop-recording`
(conference_record.c; Path, Milliseconds-Elapsed, ...: tests/fixtures/fs-captures/conference-speak.json),
a room event that no call's socket gets (`myevents`). So this module keeps one inbound ESL
connection of its own, subscribed to `CUSTOM conference::maintenance` and filtered on
`Action stop-recording`, while any recording it started is live (opened before the first starts,
closed when the last has ended), and hands each stop to the recording's `on_stop(ms)` in a greenlet
of its own. A drop of that connection while a recording ends loses the stop: callfork leaves that
recording unfinished (FreeSWITCH's file is whole, but not converted and no callback goes out).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import gevent
import gevent.event

from esl_app import ControlConnection

log = logging.getLogger("callfork.conference")

STOP_FILTER = ("Action", "stop-recording")
CONNECT_TIMEOUT_S = 5.0


class RoomRecordingFailed(Exception):
    """FreeSWITCH refused the recording, or its end could not be followed (the message says which)."""


@dataclass
class RoomRecording:
    room: str                                  # FreeSWITCH's room name
    path: str                                  # the file FreeSWITCH writes
    on_stop: Callable[[int | None], None]      # called once with the milliseconds FreeSWITCH recorded
    started: float = field(default_factory=time.time)
    stopped: gevent.event.Event = field(default_factory=gevent.event.Event)
    elapsed_ms: int | None = None


class RoomRecordings:
    _lock = threading.Lock()

    @classmethod
    def of(cls, service) -> "RoomRecordings":
        """The service's registry (made on first use)."""
        with cls._lock:
            registry = getattr(service, "_room_recordings", None)
            if registry is None:
                registry = service._room_recordings = cls(service)
            return registry

    def __init__(self, service):
        self.service = service
        self.live: dict[str, RoomRecording] = {}     # path -> recording
        self.events = None

    # -- the events connection --------------------------------------------------------------------
    def _follow(self) -> None:
        if self.events is None:
            fs = self.service.config.freeswitch
            self.events = ControlConnection(fs.esl_host, fs.esl_port, fs.esl_password,
                                            events=("CUSTOM", "conference::maintenance"), on_event=self._on_event,
                                            filters=[STOP_FILTER]).start()
        if not self.events.wait_connected(CONNECT_TIMEOUT_S):
            raise RoomRecordingFailed("cannot follow the room's recording: no event connection to FreeSWITCH "
                                      f"({self.events.last_error or 'not connected'})")

    def _unfollow_when_idle(self) -> None:
        if self.live or self.events is None:
            return
        events, self.events = self.events, None
        gevent.spawn(events.stop)

    def _on_event(self, event) -> None:
        # runs in the connection's dispatch greenlet: never block here
        if event.get("Event-Subclass") != "conference::maintenance" or event.get("Action") != "stop-recording":
            return
        rec = self.live.pop(event.get("Path") or "", None)
        if rec is None:
            return
        try:
            rec.elapsed_ms = int(event.get("Milliseconds-Elapsed") or "")
        except ValueError:
            rec.elapsed_ms = None
        rec.stopped.set()
        gevent.spawn(self._stopped, rec)

    def _stopped(self, rec: RoomRecording) -> None:
        try:
            rec.on_stop(rec.elapsed_ms)
        except Exception:
            log.exception("conference %s: finishing the recording %s failed", rec.room, rec.path)
        finally:
            self._unfollow_when_idle()

    # -- recordings -------------------------------------------------------------------------------
    def _api(self, command: str) -> str:
        control = self.service.control
        if control is None or not control.connected:
            raise RoomRecordingFailed("FreeSWITCH is not connected")
        try:
            return control.api(command)
        except Exception as exc:
            raise RoomRecordingFailed(f"FreeSWITCH did not answer {command.split(' ', 3)[:3]}: {exc}") from None

    def start(self, room: str, path: str, on_stop: Callable[[int | None], None]) -> RoomRecording:
        """Record `room` into `path`; `on_stop(ms)` once it has ended, whoever ended it. Raises
        RoomRecordingFailed (FreeSWITCH's reply, or no event connection)."""
        self._follow()
        rec = RoomRecording(room, str(path), on_stop)
        self.live[rec.path] = rec
        try:
            reply = self._api(f"conference {room} recording start {rec.path}")
        except RoomRecordingFailed:
            self.live.pop(rec.path, None)
            self._unfollow_when_idle()
            raise
        if not reply.startswith("+OK"):
            self.live.pop(rec.path, None)
            self._unfollow_when_idle()
            raise RoomRecordingFailed(reply.strip() or "no reply")
        return rec

    def stop(self, rec: RoomRecording) -> None:
        """Ask FreeSWITCH to stop one recording (its stop-recording then finishes it)."""
        if rec.path in self.live:
            self._api(f"conference {rec.room} recording stop {rec.path}")

    def stop_room(self, room: str) -> int:
        """Stop every recording of `room` (FreeSWITCH's `stop all`: callfork's, whoever started them,
        and any other); returns how many of callfork's were live."""
        ours = sum(1 for rec in self.live.values() if rec.room == room)
        self._api(f"conference {room} recording stop all")
        return ours

    def of_room(self, room: str) -> list[RoomRecording]:
        return [rec for rec in self.live.values() if rec.room == room]
