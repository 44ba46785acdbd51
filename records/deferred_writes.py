"""Deferred writes of the call records stores (records/store.py on SQLite, records/pg_store.py on
PostgreSQL): the timeline rows `add_event` keeps in memory until the next write, read, timer or
flush; the backlog of writes the database did not take, kept in order and retried; and the one
gevent timer that does both. The model is described in records/store.py's module docstring.

A store mixes in `DeferredWrites`, calls `_init_deferred` from its __init__, and supplies what
differs per database: `_refuses(exc)` (the database cannot take writes for now), `_write_now`
(one write with the pending rows, in one transaction), `_kept_transaction()`, `_apply_kept(tx,
item)` and `_apply_rows(tx, rows)` (used by `_drain`), `_db` (with close()), `_DRAIN_ERRORS` (what `_drain`
catches), `_log` and the log lines that name the database (`_MESSAGES`).
"""
import collections
import json
import logging
import threading
import time

import gevent
from gevent import monkey

log = logging.getLogger(__name__)
_native_thread_id = monkey.get_original('threading', 'get_ident')
MAX_PENDING_EVENTS = 500   # written at once beyond this many (memory stays bounded)
MAX_BACKLOG = 50000        # writes and timeline rows kept while the database refuses writes
RETRY_S = 1.0              # how often kept writes are tried again (by the timer; by reads at most)


class DeferredWrites:
    """Pending timeline rows, the backlog of refused writes and the flush/retry timer."""

    _log = log   # each store logs under its own module's name
    # the log lines that name the database (a store sets its own wording)
    _MESSAGES = {
        'closing': 'store: closing with %d write(s) the database refused (%s): they are lost',
        'wait': 'store: %d writes wait for the database (%s); dropping what comes next',
        'refused': 'store: the database refuses writes (%s); keeping them in memory and retrying',
        'back': 'store: the database takes writes again; %d kept write(s) written'}

    def _init_deferred(self, flush_delay_s, max_backlog):
        self.flush_delay_s = float(flush_delay_s)
        self.max_backlog = int(max_backlog)
        self._pending = []          # timeline rows not written yet, in order
        self._pending_lock = threading.Lock()   # guards _pending against OS threads (not greenlets)
        self._backlog = collections.deque()     # refused writes, in order: (rows, statement, args, insert)
        self._backlog_size = 0                  # writes + timeline rows in _backlog
        self._next_try = 0.0                    # monotonic time of the next backlog attempt by a read
        self.refused = None                     # why the database refuses writes (None: it takes them)
        self.dropped = 0                        # writes and rows lost past max_backlog
        self._timer = None
        self._timer_at = 0.0
        self._hub_thread = _native_thread_id()  # the timer runs in this thread's gevent hub

    def close(self):
        self.flush()
        if self._backlog_size:
            self._log.error(self._MESSAGES['closing'], self._backlog_size, self.refused)
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None
        self._db.close()

    def flush(self):
        """Write the timeline rows kept in memory now (one transaction), after any refused writes
        kept in memory. Never raises because the database refuses writes."""
        if self._backlog:
            self._drain()
        elif self._pending:
            self._write(None)

    def health(self):
        """{'writable', 'error', 'kept', 'dropped'}: whether the last write went in, why not, how
        many writes and timeline rows wait in memory for the database, how many were lost."""
        return {'writable': self.refused is None, 'error': self.refused, 'kept': self._backlog_size,
                'dropped': self.dropped}

    def add_event(self, call_uuid, kind, detail=None):
        """Append to the call's timeline (verbs run, errors, streams, recordings, webhooks).
        `detail` is stored as JSON; values JSON cannot hold are stored as their str(). The row is
        written with the next write, read or timer; readers of this store see it at once."""
        text = json.dumps(detail if detail is not None else {}, default=str, sort_keys=True)
        row = (str(call_uuid), time.time(), str(kind), text)
        with self._pending_lock:
            self._pending.append(row)
        if self.flush_delay_s <= 0 or len(self._pending) >= MAX_PENDING_EVENTS:
            self._write(None)   # now (kept in memory if the database refuses it)
            return
        if _native_thread_id() == self._hub_thread:
            self._arm(self.flush_delay_s)
        else:
            self.flush()   # no timer in a foreign OS thread: write at once

    def _settle(self):
        """Before a read: what this store holds goes in first (refused writes at most once a second)."""
        if self._backlog:
            if time.monotonic() >= self._next_try:
                self._drain()
        elif self._pending:
            self._write(None)

    def _take_pending(self):
        with self._pending_lock:
            rows, self._pending = self._pending, []
        return rows

    def _restore(self, rows):
        if rows:
            with self._pending_lock:
                self._pending[:0] = rows

    def _write(self, statement, args=None, insert=None):
        """Run `statement` (or nothing) in one transaction with the pending timeline rows; with
        `insert` (statement, args), that runs too when `statement` changed no row. If the database
        refuses the write for now, it is kept and None returned; another failure keeps the rows for
        the next write and raises. Returns the rowcount of `statement`."""
        rows = self._take_pending()
        if self._backlog:       # an earlier write waits for the database: keep the order
            self._keep(rows, statement, args, insert)
            return None
        try:
            return self._write_now(rows, statement, args, insert)
        except BaseException as exc:
            if not self._refuses(exc):
                self._restore(rows)
                raise
            self._refused(exc)
            self._keep(rows, statement, args, insert)
            return None

    def _keep(self, rows, statement, args, insert):
        size = len(rows) + (statement is not None)
        if not size:
            return
        if self._backlog_size + size > self.max_backlog:
            if not self.dropped:
                self._log.error(self._MESSAGES['wait'], self._backlog_size, self.refused)
            self.dropped += size
            return
        self._backlog.append((rows, statement, args, insert))
        self._backlog_size += size
        self._arm(RETRY_S)

    def _refused(self, exc):
        if self.refused is None:
            self._log.error(self._MESSAGES['refused'], exc)
        self.refused = str(exc)
        self._next_try = time.monotonic() + RETRY_S

    def _drain(self):
        """Every kept write, then the pending timeline rows, in one transaction; True if they went in.
        A kept write that can never succeed is dropped (`_apply_kept` returns False) and counted."""
        items = list(self._backlog)
        rows = self._take_pending()
        skipped = 0
        try:
            with self._kept_transaction() as tx:
                for item in items:
                    if not self._apply_kept(tx, item):
                        skipped += 1
                if rows:
                    self._apply_rows(tx, rows)
        except self._DRAIN_ERRORS as exc:
            self._restore(rows)
            if not self._refuses(exc):
                raise
            self._refused(exc)
            self._arm(RETRY_S)
            return False
        for _ in items:
            kept_rows, statement, _, _ = self._backlog.popleft()
            self._backlog_size -= len(kept_rows) + (statement is not None)
        self.dropped += skipped
        if self.refused is not None:
            self._log.warning(self._MESSAGES['back'], len(items))
        self.refused = None
        return True

    def _arm(self, delay):
        """The timer fires within `delay` s (an earlier one is kept, a later one replaced)."""
        if _native_thread_id() != self._hub_thread:
            return
        at = time.monotonic() + delay
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.kill(block=False)
        self._timer_at = at
        self._timer = gevent.spawn_later(delay, self._timed_flush)

    def _timed_flush(self):
        self._timer = None
        try:
            self.flush()
        except Exception as exc:  # a bad statement: keep the rows, try again later
            self._log.warning('store: could not write %d timeline row(s) (%s); retrying in 1 s',
                              len(self._pending), exc)
            self._arm(1.0)
            return
        if self._backlog:
            self._arm(RETRY_S)
