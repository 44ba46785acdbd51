"""The app's audio on its way to the caller, and the marks between it: playAudio/media messages
are converted (downstream.py) into the playout queue (playout.py), played by the stream's playout
(module_playout.py for the jambonz build, file_playout.py for the drachtio build, chosen once when
the module attaches), and each checkpoint/mark is acked once the caller has heard the audio before
it (`heard`, module_buffer.py). A clear empties the queue and what the module holds; the marks it
drops are voided (Vobiz) or returned (Twilio).

Messages to the app and events go through the stream's callbacks (`send`, `emit`, `spawn` for an
ack that must wait), which `detach` drops when the stream ends, so nothing here keeps it alive.
"""
from __future__ import annotations

import logging
import time

import gevent
from gevent.event import Event

from .downstream import Downstream
from .errors import ProtocolError
from .file_playout import FilePlayout
from .module_buffer import PLAYOUT_FRAME, ModuleBuffer
from .module_playout import ModulePlayout
from .playout import PlayoutQueue

log = logging.getLogger("callfork.audio_fork.session")

__all__ = ["Playback"]


class Playback:
    def __init__(self, spec, dialect, relay, label: str, send, emit, spawn, call_api,
                 may_kill_audio=None):
        self.spec = spec
        self.call_uuid = spec.call_uuid
        self.stream_id = spec.stream_id
        self.dialect = dialect
        self.relay = relay
        self.label = label
        self.send = send                  # (text, control) to the app
        self.emit = emit                  # (event name, detail)
        self.spawn = spawn                # a greenlet the stream kills when it ends
        self.call_api = call_api
        self.may_kill_audio = may_kill_audio
        self.downstream = Downstream(spec.l16_byte_order)
        # marks whose audio went to the module, acked by ack_marks() once the caller has heard it.
        # Filled by the playout queue inside pull()/add_mark() and emptied in place (never rebound):
        # its `append` is the queue's callback, which holds the list and not this object
        self.marks_due: list = []
        self.playout = PlayoutQueue(PLAYOUT_FRAME, on_mark=self.marks_due.append,
                                    max_seconds=spec.max_playout_seconds)
        self.heard = ModuleBuffer()       # what the caller hears of the app's audio, by the clock
        self.audio_ready = Event()        # set when the playout queue got audio or a mark
        self.player = None
        self.stopping = False

    def attach(self, module):
        """The module's WebSocket is up: the playout for this build of mod_audio_fork, whose `run`
        the stream runs in a greenlet (None for a one-way stream)."""
        if not self.spec.bidirectional:
            return None
        if self.spec.flavor == "jambonz":
            self.player = ModulePlayout(self, module)
        else:
            self.player = FilePlayout(self)
        return self.player

    def detach(self) -> None:
        """The stream ended: drop the callbacks and the playout (each holds the stream)."""
        self.stopping = True
        self.player = None
        self.send = self.emit = self.spawn = self.call_api = self.may_kill_audio = None

    # -- from the app ----------------------------------------------------------------------------

    def play(self, audio: bytes, encoding: str, sample_rate: int) -> None:
        if not self.spec.bidirectional:
            raise ProtocolError("audio from the app on a one-way stream (bidirectional is off)")
        pcm = self.downstream.convert(audio, encoding, sample_rate)
        accepted = self.playout.append(pcm)
        if accepted < len(pcm):
            self.relay.playout_dropped_bytes += len(pcm) - accepted
            self.emit("degraded", {"reason": "playout queue full", "dropped_bytes": self.playout.dropped_bytes})
        self.audio_ready.set()

    def mark(self, name: str) -> None:
        for tail in self.downstream.flush():  # the audio before the mark must play in full
            self.playout.append(tail)
        waiting = self.playout.pending_marks
        if not self.playout.add_mark(name) and self.playout.pending_marks == waiting:
            # over the queue's cap (max_marks): it will never be played, so it is voided (Vobiz) /
            # returned (Twilio) as on a clear, and reported (a DegradedStream naming it)
            self._mark_cleared([name])
            self.emit("degraded", {"reason": f"checkpoint dropped: {waiting} checkpoints already wait "
                                             "for their audio", "checkpoint": name})
            return
        self.audio_ready.set()
        self.ack_marks()

    def clear(self) -> list:
        """Drop the queued audio and what the module holds; the names of the marks dropped."""
        names = self.playout.clear()
        self.ack_marks()  # marks already played (pulled) before the clear are still acked
        self.downstream.reset()
        self._mark_cleared(names)
        if self.player is not None:
            self.player.clear()
        return names

    # -- marks ------------------------------------------------------------------------------------

    def ack_marks(self) -> None:
        """Ack the due marks once the caller has heard their audio: at once when the module has
        nothing of ours waiting, else when its buffer has played out (the tail of an utterance
        still in its prebuffer is flushed by the pacer's padding, which calls this again)."""
        if not self.marks_due or self.heard.pending or self.stopping:
            return
        names = self.marks_due[:]
        self.marks_due.clear()
        delay = self.heard.audio_end - time.monotonic()
        if delay <= 0.005:
            self._send_acks(names)
        else:
            self.spawn(self._send_acks_later, delay, names)

    def return_marks(self) -> None:
        """The due marks' audio will not play: void (Vobiz) / returned (Twilio), as on a clear."""
        names = self.marks_due[:]
        self.marks_due.clear()
        self._mark_cleared(names)

    def _send_acks_later(self, delay: float, names: list) -> None:
        gevent.sleep(delay)
        self._send_acks(names)

    def _send_acks(self, names: list) -> None:
        if self.stopping:
            return
        for name in names:
            self.send(self.dialect.played(name), True)
            self.emit("played", {"name": name})

    def _mark_cleared(self, names: list) -> None:
        for name in names:
            text = self.dialect.mark_cleared(name)
            if text:
                self.send(text, True)
