"""Everything one stream sends to its app, in order, without ever making the caller's audio wait
for a slow app.

When nothing is queued or in flight (the usual case) a text is framed and written from the
greenlet that made it (the module reader), with a non-blocking send; whatever the kernel does not
take, and everything after it, goes through the bounded send queue (AppSendQueue) to the writer
greenlet (`run_writer`), which sends up to 64 queued frames in one write and pings an idle app.
Texts made from one module read can be held (`hold`) and written together (`flush_held`). A full
queue drops media (counted here and in the relay's totals) and reports `degraded` once per episode;
a failed send reports the connection lost once. Reports go to `on_degraded` / `on_lost`, which the
stream clears (`detach`) when it ends, so nothing here keeps the stream alive.
"""
from __future__ import annotations

import logging
import time

from .app_queue import AppSendQueue
from .appframes import text_frame, text_frames

log = logging.getLogger("callfork.audio_fork.session")

__all__ = ["AppSender"]

BATCH = 64   # frames per write from the writer


class AppSender:
    def __init__(self, conn, limit: int, relay, label: str, send_timeout: float,
                 keepalive_seconds: float, on_degraded=None, on_lost=None):
        self.conn = conn
        self.queue = AppSendQueue(limit)
        self.relay = relay
        self.label = label                 # "[call stream]" for log lines
        self.send_timeout = send_timeout
        self.keepalive_seconds = keepalive_seconds
        self.on_degraded = on_degraded     # (detail) once per episode of a full queue
        self.on_lost = on_lost             # (error) once: a send failed
        self.degraded = False
        self._busy = False                 # the writer holds a batch it has not finished sending
        self._held: list | None = None
        self._last_send = time.monotonic()
        self._lost = False

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    def detach(self) -> None:
        self.on_degraded = self.on_lost = None

    # -- from the stream --------------------------------------------------------------------------

    def send(self, text: str, control: bool = False) -> None:
        """Queue or write `text`; media (not `control`) may be dropped when the app is behind."""
        if self._held is not None:
            self._held.append((text, control))
            return
        if self._lost:
            return  # the app is gone: the stream is stopping
        queue = self.queue
        if not queue.items and not self._busy and not queue.closed and self._write_now(text):
            self.degraded = False
            return
        if queue.put(text, control):
            if self.degraded and len(queue) < queue.limit // 2:
                self.degraded = False
            return
        if queue.closed:
            return
        self.relay.app_dropped += 1
        if not self.degraded:
            self.degraded = True
            log.warning("%s app is not keeping up: send queue full, dropping media", self.label)
            if self.on_degraded is not None:
                self.on_degraded({"dropped": queue.dropped})

    def hold(self) -> None:
        """Keep what is sent from now on until `flush_held` (one write for a module read's worth)."""
        self._held = []

    def flush_held(self) -> None:
        held, self._held = self._held, None
        if not held:
            return
        queue = self.queue
        if (len(held) > 1 and not queue.items and not self._busy and not queue.closed
                and self._write_now([t for t, _ in held])):
            self.degraded = False
            return
        for text, control in held:
            self.send(text, control)

    def close(self) -> None:
        """No more sends: the writer sends what is queued, then ends."""
        self.queue.close()

    def _write_now(self, text) -> bool:
        """One text (or a list of texts, in one write) straight to the socket, never blocking: what
        the kernel does not take goes to the writer, which then owns the order. False: queue it."""
        data = text_frame(text) if text.__class__ is str else text_frames(text)
        try:
            sent = self.conn.send_now(data)
        except OSError as exc:
            self._failed(exc)
            return True
        if sent is None:
            return False
        if sent < len(data):
            self.queue.put_raw(data[sent:])
        self._last_send = time.monotonic()
        return True

    def _failed(self, exc: Exception) -> None:
        if self._lost:
            return
        self._lost = True
        on_lost = self.on_lost
        if on_lost is not None:
            on_lost(repr(exc))

    # -- the writer greenlet ----------------------------------------------------------------------

    def run_writer(self) -> None:
        conn = self.conn
        keepalive = self.keepalive_seconds
        queue = self.queue
        while True:
            self._busy = False
            try:
                text = queue.get(timeout=min(5.0, keepalive))
            except EOFError:
                return
            if text is None:
                if time.monotonic() - self._last_send >= keepalive:
                    # an idle stream (paused fork, one-way app) must not be cut by proxies
                    try:
                        conn.ping(self.send_timeout)
                    except Exception as exc:  # noqa: BLE001
                        log.info("%s keepalive ping failed: %r", self.label, exc)
                    self._last_send = time.monotonic()
                continue
            self._busy = True  # until this batch is out, writes from the stream would overtake it
            batch = [text] + queue.drain(BATCH - 1)
            try:
                conn.send_all(b"".join([t if t.__class__ is bytes else text_frame(t) for t in batch]),
                              self.send_timeout)
                self._last_send = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - a dead or stalled app
                self._failed(exc)
                return

