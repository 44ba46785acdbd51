"""Call records in SQLite (WAL): calls, each call's timeline, its streams and its recordings.

Plain sqlite3 through `db.Database`: one connection per Store, serialised by one lock, safe to share
between greenlets (and OS threads). It can share the outbox's database file. Times are Unix seconds
(float) unless the name says _ms. Unknown field names are a programming error (ValueError).

Timeline rows are grouped: `add_event` keeps the row in memory and it is written in the same
transaction as the Store's next write (a call's status change, a stream, a recording), before any
read of this Store (so every reader sees it, in order), when `flush_delay_s` has passed (a timer in
the gevent hub), at `flush()`, at `close()` and when the interpreter exits normally. A SQLite commit
costs about the same for one row as for ten, so a call step's rows cost one commit. The price: a
kill -9 loses the timeline rows of its last `flush_delay_s` (0.2 s by default; 0 writes each row at
once). Calls, streams, recordings and the outbox are never held back.

A database that refuses a write for now (full disk, I/O error, read-only file, another writer:
`db.write_refused`) does not fail the caller: the write (and the timeline rows taken with it) is kept
in memory, in order, and every later write queues behind it until a retry (every second, and before
a read) gets the whole backlog in, in one transaction. Meanwhile reads see what the file holds, and
`health()` says so. The backlog is bounded (`max_backlog` writes and rows): past it, new writes are
dropped and counted (`health()['dropped']`), never raised into a call.
"""
import atexit
import collections
import json
import logging
import sqlite3
import threading
import time
import weakref

import gevent
from gevent import monkey

from .db import Database, write_refused
from .schema import (CALL_ALIASES, CALL_FIELDS, CALL_STATUSES, RECORDING_FIELDS, SCHEMA, STREAM_FIELDS,
                     STREAM_STATUSES, add_missing_columns, check_fields)

log = logging.getLogger(__name__)
_native_thread_id = monkey.get_original('threading', 'get_ident')
MAX_PENDING_EVENTS = 500   # written at once beyond this many (memory stays bounded)
MAX_BACKLOG = 50000        # writes and timeline rows kept while the database refuses writes
RETRY_REFUSED_S = 1.0

class Store:
    """Call records. See the module docstring for the threading model. `busy_timeout_ms`: how long a
    write waits while another connection writes the file before it is kept for later; `max_bytes`:
    the database file's size cap (records.Database); `max_backlog`: how many refused writes and
    timeline rows are kept in memory."""

    def __init__(self, db_path, *, synchronous='NORMAL', flush_delay_s=0.2, busy_timeout_ms=2000, max_bytes=None,
                 max_backlog=MAX_BACKLOG):
        self._db = Database(db_path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms, max_bytes=max_bytes)
        self._db.script(SCHEMA)
        add_missing_columns(self._db)   # calls.node_id (records/schema.py)
        self.flush_delay_s = float(flush_delay_s)
        self._pending = []          # timeline rows not written yet, in order (see the module docstring)
        self._pending_lock = threading.Lock()   # guards _pending against OS threads (not greenlets)
        self._backlog = collections.deque()     # refused writes, in order: (rows, statement, args, insert)
        self._backlog_size = 0                  # writes + timeline rows in _backlog
        self._next_try = 0.0                    # monotonic time of the next backlog attempt by a read
        self.refused = None                     # why the database refuses writes (None: it takes them)
        self.dropped = 0                        # writes and rows lost past max_backlog
        self.max_backlog = int(max_backlog)
        self._timer = None
        self._timer_at = 0.0
        self._hub_thread = _native_thread_id()  # the timer runs in this thread's gevent hub
        atexit.register(_flush_at_exit, weakref.ref(self))   # a clean exit writes what is kept

    def close(self):
        self.flush()
        if self._backlog_size:
            log.error('store: closing with %d write(s) the database refused (%s): they are lost',
                      self._backlog_size, self.refused)
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None
        self._db.close()

    # ---------------------------------------------------------------- grouped writes
    # (the timer, close() and the exit hook write what add_event kept; see the module docstring)

    def flush(self):
        """Write the timeline rows kept in memory now (one transaction), after any refused writes
        kept in memory (module docstring). Never raises because the database refuses writes."""
        if self._backlog:
            self._drain()
        elif self._pending:
            self._write(None)

    def health(self):
        """{'writable', 'error', 'kept', 'dropped'}: whether the last write went in, why not, how
        many writes and timeline rows wait in memory for the database, how many were lost."""
        return {'writable': self.refused is None, 'error': self.refused, 'kept': self._backlog_size,
                'dropped': self.dropped}

    def _settle(self):
        """Before a read: what this Store holds goes in first (refused writes at most once a second)."""
        if self._backlog:
            if time.monotonic() >= self._next_try:
                self._drain()
        elif self._pending:
            self._write(None)

    def _take_pending(self):
        with self._pending_lock:
            rows, self._pending = self._pending, []
        return rows

    def _write(self, statement, args=(), insert=None):
        """Run `statement` (or nothing) in one transaction with the pending timeline rows; with
        `insert` (statement, args), that runs too when `statement` changed no row. If the database
        refuses the write for now, it is kept (module docstring) and None returned; another failure
        keeps the rows for the next write and raises. Returns the rowcount of `statement`."""
        rows = self._take_pending()
        if self._backlog:       # an earlier write waits for the database: keep the order
            self._keep(rows, statement, args, insert)
            return None
        try:
            if not rows and insert is None:
                return self._db.execute(statement, args)[1] if statement else 0
            with self._db.transaction() as conn:
                return _apply(conn, rows, statement, args, insert)
        except sqlite3.Error as exc:
            if not write_refused(exc):
                self._restore(rows)
                raise
            self._refused(exc)
            self._keep(rows, statement, args, insert)
            return None
        except BaseException:
            self._restore(rows)
            raise

    def _restore(self, rows):
        if rows:
            with self._pending_lock:
                self._pending[:0] = rows

    def _keep(self, rows, statement, args, insert):
        size = len(rows) + (statement is not None)
        if not size:
            return
        if self._backlog_size + size > self.max_backlog:
            if not self.dropped:
                log.error('store: %d writes wait for the database (%s); dropping what comes next',
                          self._backlog_size, self.refused)
            self.dropped += size
            return
        self._backlog.append((rows, statement, args, insert))
        self._backlog_size += size
        self._schedule_retry()

    def _refused(self, exc):
        if self.refused is None:
            log.error('store: the database refuses writes (%s); keeping them in memory and retrying', exc)
        self.refused = str(exc)
        self._next_try = time.monotonic() + RETRY_REFUSED_S

    def _drain(self):
        """Every kept write, then the pending timeline rows, in one transaction; True if they went in."""
        items = list(self._backlog)
        rows = self._take_pending()
        skipped = 0
        try:
            with self._db.transaction() as conn:
                for item in items:
                    try:
                        _apply(conn, *item)
                    except sqlite3.Error as exc:
                        if write_refused(exc):
                            raise
                        # a statement that can never succeed must not hold the others back for ever
                        log.error('store: a kept write failed and is dropped: %s', exc)
                        skipped += 1
                if rows:
                    _apply(conn, rows, None, (), None)
        except sqlite3.Error as exc:
            self._restore(rows)
            if not write_refused(exc):
                raise
            self._refused(exc)
            self._schedule_retry()
            return False
        for _ in items:
            kept_rows, statement, _, _ = self._backlog.popleft()
            self._backlog_size -= len(kept_rows) + (statement is not None)
        self.dropped += skipped
        if self.refused is not None:
            log.warning('store: the database takes writes again; %d kept write(s) written', len(items))
        self.refused = None
        return True

    def _schedule_flush(self):
        self._arm(self.flush_delay_s)

    def _schedule_retry(self):
        self._arm(RETRY_REFUSED_S)

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
            log.warning('store: could not write %d timeline row(s) (%s); retrying in 1 s', len(self._pending), exc)
            self._arm(1.0)
            return
        if self._backlog:
            self._schedule_retry()

    def _upsert(self, table, key_name, key, fields):
        """Update the given columns of the existing row or insert a new one, in one transaction
        with the pending timeline rows. Calls (no NOT NULL column but the times) take one
        INSERT ... ON CONFLICT statement."""
        now = time.time()
        columns = list(fields)
        insert_cols = [key_name] + columns + ['created_at', 'updated_at']
        insert = ('INSERT INTO %s (%s) VALUES (%s)' % (table, ', '.join(insert_cols), ','.join('?' * len(insert_cols))),
                  [key] + [fields[c] for c in columns] + [now, now])
        if table == 'calls':
            updates = ', '.join(['%s=excluded.%s' % (c, c) for c in columns] + ['updated_at=excluded.updated_at'])
            self._write('%s ON CONFLICT(%s) DO UPDATE SET %s' % (insert[0], key_name, updates), insert[1])
            return
        assignments = ', '.join(['%s=?' % c for c in columns] + ['updated_at=?'])
        self._write('UPDATE %s SET %s WHERE %s=?' % (table, assignments, key_name),
                    [fields[c] for c in columns] + [now, key], insert=insert)

    # ---------------------------------------------------------------- calls

    def upsert_call(self, uuid, **fields):
        """Create the call or update the given fields (others keep their values).
        `from_`/`from`/`to` are accepted for from_number/to_number."""
        fields = {CALL_ALIASES.get(k, k): v for k, v in fields.items()}
        check_fields(fields, CALL_FIELDS, 'call')
        status = fields.get('status')
        if status is not None and status not in CALL_STATUSES:
            raise ValueError('call status %r is not one of %s' % (status, CALL_STATUSES))
        self._upsert('calls', 'uuid', str(uuid), fields)

    def get_call(self, uuid):
        self._settle()
        return self._db.query_one('SELECT * FROM calls WHERE uuid=?', (str(uuid),))

    def list_calls(self, live_only=False, limit=100, offset=0):
        """Newest first (by start time, then creation). live_only: ringing or in-progress, not ended."""
        where = ''
        if live_only:
            where = "WHERE status IN ('ringing','in-progress') AND end_time IS NULL"
        self._settle()
        return self._db.query('SELECT * FROM calls %s ORDER BY COALESCE(start_time, created_at) DESC, rowid DESC '
                              'LIMIT ? OFFSET ?' % where, (int(limit), int(offset)))

    def count_calls(self, live_only=False):
        self._settle()
        if live_only:
            return self._db.scalar("SELECT COUNT(*) FROM calls WHERE status IN ('ringing','in-progress') "
                                   "AND end_time IS NULL")
        return self._db.scalar('SELECT COUNT(*) FROM calls')

    # ---------------------------------------------------------------- timeline

    def add_event(self, call_uuid, kind, detail=None):
        """Append to the call's timeline (verbs run, errors, streams, recordings, webhooks).
        `detail` is stored as JSON; values JSON cannot hold are stored as their str(). The row is
        written with the next write, read or timer (module docstring); readers of this Store see it
        at once."""
        text = json.dumps(detail if detail is not None else {}, default=str, sort_keys=True)
        row = (str(call_uuid), time.time(), str(kind), text)
        with self._pending_lock:
            self._pending.append(row)
        if self.flush_delay_s <= 0 or len(self._pending) >= MAX_PENDING_EVENTS:
            self._write(None)   # now (kept in memory if the database refuses it)
            return
        if _native_thread_id() == self._hub_thread:
            self._schedule_flush()
        else:
            self.flush()   # no timer in a foreign OS thread: write at once

    def timeline(self, uuid):
        self._settle()
        rows = self._db.query('SELECT id, call_uuid, ts, kind, detail FROM call_events WHERE call_uuid=? '
                              'ORDER BY id', (str(uuid),))
        for row in rows:
            row['detail'] = json.loads(row['detail'])
        return rows

    # ---------------------------------------------------------------- streams

    def upsert_stream(self, stream_id, **fields):
        check_fields(fields, STREAM_FIELDS, 'stream')
        status = fields.get('status')
        if status is not None and status not in STREAM_STATUSES:
            raise ValueError('stream status %r is not one of %s' % (status, STREAM_STATUSES))
        if 'bidirectional' in fields and fields['bidirectional'] is not None:
            fields['bidirectional'] = 1 if fields['bidirectional'] else 0
        if 'call_uuid' in fields and not fields['call_uuid']:
            raise ValueError('call_uuid cannot be empty')
        if 'call_uuid' not in fields and self._db.scalar('SELECT 1 FROM streams WHERE stream_id=?',
                                                         (str(stream_id),)) is None:
            raise ValueError('a new stream needs call_uuid')
        self._upsert('streams', 'stream_id', str(stream_id), fields)

    def get_stream(self, stream_id):
        self._settle()
        row = self._db.query_one('SELECT * FROM streams WHERE stream_id=?', (str(stream_id),))
        return self._stream_row(row)

    def list_streams(self, call_uuid):
        self._settle()
        rows = self._db.query('SELECT * FROM streams WHERE call_uuid=? ORDER BY created_at, rowid',
                              (str(call_uuid),))
        return [self._stream_row(r) for r in rows]

    @staticmethod
    def _stream_row(row):
        if row is not None and row['bidirectional'] is not None:
            row['bidirectional'] = bool(row['bidirectional'])
        return row

    # ---------------------------------------------------------------- recordings

    def add_recording(self, recording_id, call_uuid, **fields):
        check_fields(fields, RECORDING_FIELDS, 'recording')
        fields['call_uuid'] = str(call_uuid)
        now = time.time()
        columns = list(fields)
        self._write('INSERT INTO recordings (recording_id, %s, created_at, updated_at) VALUES (%s)'
                         % (', '.join(columns), ','.join('?' * (len(columns) + 3))),
                         [str(recording_id)] + [fields[c] for c in columns] + [now, now])

    def update_recording(self, recording_id, **fields):
        """Update the given fields; KeyError if the recording does not exist."""
        check_fields(fields, RECORDING_FIELDS, 'recording')
        if not fields:
            return
        assignments = ', '.join('%s=?' % c for c in fields)
        count = self._write('UPDATE recordings SET %s, updated_at=? WHERE recording_id=?' % assignments,
                            list(fields.values()) + [time.time(), str(recording_id)])
        if count == 0:   # (None: kept until the database takes writes again)
            raise KeyError('no recording %r' % (recording_id,))

    def get_recording(self, recording_id):
        self._settle()
        return self._db.query_one('SELECT * FROM recordings WHERE recording_id=?', (str(recording_id),))

    def list_recordings(self, call_uuid):
        self._settle()
        return self._db.query('SELECT * FROM recordings WHERE call_uuid=? ORDER BY created_at, rowid',
                              (str(call_uuid),))


def _apply(conn, rows, statement, args, insert):
    """One kept or direct write on an open transaction: timeline rows, then the statement (and its
    insert when the statement changed no row). Returns the statement's rowcount."""
    if rows:
        conn.executemany('INSERT INTO call_events (call_uuid, ts, kind, detail) VALUES (?,?,?,?)', rows)
    count = conn.execute(statement, args).rowcount if statement else 0
    if insert is not None and count == 0:
        conn.execute(*insert)
    return count


def _flush_at_exit(ref):
    store = ref()
    if store is not None and store._pending:
        try:
            store.flush()
        except Exception as exc:
            log.error('store: %d timeline row(s) could not be written at exit: %s', len(store._pending), exc)
