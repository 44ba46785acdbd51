"""The app's audio played as files on the channel, for the drachtio build of mod_audio_fork, which
discards audio from the server. Chosen by playback.py for a bidirectional drachtio stream.

App audio is gathered into utterances (until the app pauses 60 ms, a checkpoint/mark, or 1 s of
audio), written as 8 kHz WAV files and played on the channel with `uuid_broadcast`, one after the
other and at most ~100 ms ahead of real time (so clearAudio stays responsive). Marks are acked by
the playback when the file holding their audio has played, by the clock (no ESL events reach the
relay). clearAudio drops the queue and breaks the channel's playback (`uuid_break`), which also
stops anything else the channel plays at that moment. A file is deleted 5 s after it has played.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
import wave

import gevent

from .module_buffer import PLAYOUT_RATE

log = logging.getLogger("callfork.audio_fork.session")

__all__ = ["FilePlayout"]

UTTERANCE_BYTES = PLAYOUT_RATE * 2     # at most 1 s of L16 per file
GATHER_SECONDS = 0.06                  # an app pause this long ends an utterance
AHEAD_SECONDS = 0.1                    # how far ahead of real time files are queued


class FilePlayout:
    """`playback` is the stream's Playback (its spec, playout queue, `heard`, `audio_ready`,
    `stopping`, due marks, `ack_marks`, `return_marks`, `call_api`, relay counters)."""

    def __init__(self, playback):
        self.playback = playback

    def run(self) -> None:
        playback = self.playback
        playout = playback.playout
        heard = playback.heard
        ready = playback.audio_ready
        while not playback.stopping:
            if not playout.queued_bytes:
                ready.clear()
                if not playout.queued_bytes:
                    ready.wait(0.1)
                continue
            gather_until = time.monotonic() + GATHER_SECONDS
            while (playout.queued_bytes < UTTERANCE_BYTES and not playout.has_mark_after_audio()
                   and time.monotonic() < gather_until and not playback.stopping):
                ready.clear()
                ready.wait(max(0.0, gather_until - time.monotonic()))
            chunks, size = [], 0
            while size < UTTERANCE_BYTES and not playback.marks_due:
                frame = playout.pull(partial=True)
                if frame is None:
                    break
                chunks.append(frame)
                size += len(frame)
            if not chunks or playback.stopping:
                playback.ack_marks()
                continue
            audio = b"".join(chunks)
            path = self._write_wav(audio)
            try:
                reply = playback.call_api(f"uuid_broadcast {playback.call_uuid} {path} aleg")
            except Exception as exc:  # noqa: BLE001 - the call may be gone
                log.warning("%s uuid_broadcast failed: %s", playback.label, exc)
                _unlink(path)
                # the audio did not play: its marks are void (Vobiz) / returned (Twilio), as on a clear
                playback.return_marks()
                continue
            now = time.monotonic()
            heard.played_from(now, len(audio) / 2 / PLAYOUT_RATE)
            playback.relay.frames_out += len(chunks)
            gevent.spawn_later(heard.heard_end - now + 5.0, _unlink, path)
            playback.ack_marks()
            log.debug("%s playing %s (%s)", playback.label, path, reply)
            ahead = heard.heard_end - time.monotonic() - AHEAD_SECONDS
            if ahead > 0:
                gevent.sleep(ahead)

    def clear(self) -> None:
        """Stop the file playing now (and, unavoidably, whatever else the channel plays)."""
        playback = self.playback
        playback.heard.killed(time.monotonic())
        try:
            playback.call_api(f"uuid_break {playback.call_uuid} all")
        except Exception as exc:  # noqa: BLE001
            log.info("%s uuid_break: %s", playback.label, exc)

    def _write_wav(self, pcm: bytes) -> str:
        playback = self.playback
        directory = playback.spec.media_dir or tempfile.gettempdir()
        fd, path = tempfile.mkstemp(prefix=f"callfork_{playback.stream_id}_", suffix=".wav", dir=directory)
        with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(PLAYOUT_RATE)
            wav.writeframes(pcm)
        return path


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
