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
"""
import atexit
import json
import logging
import threading
import time
import weakref

import gevent
from gevent import monkey

from .db import Database

log = logging.getLogger(__name__)
_native_thread_id = monkey.get_original('threading', 'get_ident')
MAX_PENDING_EVENTS = 500   # written at once beyond this many (memory stays bounded)

CALL_STATUSES = ('ringing', 'in-progress', 'completed', 'no-answer', 'busy', 'cancel', 'timeout', 'failed')
LIVE_CALL_STATUSES = ('ringing', 'in-progress')
STREAM_STATUSES = ('in-progress', 'completed', 'failed')

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    uuid TEXT PRIMARY KEY,
    direction TEXT,
    from_number TEXT,
    to_number TEXT,
    answer_url TEXT,
    status TEXT,
    start_time REAL,
    answer_time REAL,
    end_time REAL,
    hangup_cause TEXT,
    hangup_cause_code INTEGER,
    hangup_cause_name TEXT,
    hangup_source TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_status ON calls(status, start_time);
CREATE INDEX IF NOT EXISTS calls_start ON calls(start_time);
CREATE TABLE IF NOT EXISTS call_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_uuid TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_events_call ON call_events(call_uuid, id);
CREATE TABLE IF NOT EXISTS streams (
    stream_id TEXT PRIMARY KEY,
    call_uuid TEXT NOT NULL,
    service_url TEXT,
    audio_track TEXT,
    bidirectional INTEGER,
    content_type TEXT,
    sampling_rate INTEGER,
    stream_timeout REAL,
    status_callback_url TEXT,
    status_callback_method TEXT,
    status TEXT,
    start_time REAL,
    end_time REAL,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS streams_call ON streams(call_uuid, created_at);
CREATE TABLE IF NOT EXISTS recordings (
    recording_id TEXT PRIMARY KEY,
    call_uuid TEXT NOT NULL,
    path TEXT,
    format TEXT,
    duration_ms INTEGER,
    start_ms INTEGER,
    end_ms INTEGER,
    end_reason TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_call ON recordings(call_uuid, created_at);
"""

CALL_FIELDS = ('direction', 'from_number', 'to_number', 'answer_url', 'status', 'start_time', 'answer_time',
               'end_time', 'hangup_cause', 'hangup_cause_code', 'hangup_cause_name', 'hangup_source', 'error')
CALL_ALIASES = {'from_': 'from_number', 'from': 'from_number', 'to': 'to_number'}
STREAM_FIELDS = ('call_uuid', 'service_url', 'audio_track', 'bidirectional', 'content_type', 'sampling_rate',
                 'stream_timeout', 'status_callback_url', 'status_callback_method', 'status', 'start_time',
                 'end_time', 'error')
RECORDING_FIELDS = ('call_uuid', 'path', 'format', 'duration_ms', 'start_ms', 'end_ms', 'end_reason')


def _check_fields(fields, allowed, what):
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ValueError('unknown %s field(s): %s (known: %s)' % (what, ', '.join(unknown), ', '.join(allowed)))


class Store:
    """Call records. See the module docstring for the threading model. `busy_timeout_ms`: how long a
    write waits while another connection writes the file before it fails (sqlite3.OperationalError)."""

    def __init__(self, db_path, *, synchronous='NORMAL', flush_delay_s=0.2, busy_timeout_ms=2000):
        self._db = Database(db_path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        self._db.script(SCHEMA)
        self.flush_delay_s = float(flush_delay_s)
        self._pending = []          # timeline rows not written yet, in order (see the module docstring)
        self._pending_lock = threading.Lock()   # guards _pending against OS threads (not greenlets)
        self._timer = None
        self._hub_thread = _native_thread_id()  # the timer runs in this thread's gevent hub
        atexit.register(_flush_at_exit, weakref.ref(self))   # a clean exit writes what is kept

    def close(self):
        self.flush()
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None
        self._db.close()

    # ---------------------------------------------------------------- grouped writes
    # (the timer, close() and the exit hook write what add_event kept; see the module docstring)

    def flush(self):
        """Write the timeline rows kept in memory now (one transaction)."""
        if self._pending:
            self._write(None)

    def _take_pending(self):
        with self._pending_lock:
            rows, self._pending = self._pending, []
        return rows

    def _write(self, statement, args=(), insert=None):
        """Run `statement` (or nothing) in one transaction with the pending timeline rows; with
        `insert` (statement, args), that runs too when `statement` changed no row. If anything
        fails the rows are kept for the next write. Returns the rowcount of `statement`."""
        rows = self._take_pending()
        try:
            if not rows and insert is None:
                return self._db.execute(statement, args)[1] if statement else 0
            with self._db.transaction() as conn:
                if rows:
                    conn.executemany('INSERT INTO call_events (call_uuid, ts, kind, detail) VALUES (?,?,?,?)',
                                     rows)
                count = conn.execute(statement, args).rowcount if statement else 0
                if insert is not None and count == 0:
                    conn.execute(*insert)
                return count
        except BaseException:
            if rows:
                with self._pending_lock:
                    self._pending[:0] = rows
            raise

    def _schedule_flush(self):
        if self._timer is None and _native_thread_id() == self._hub_thread:
            self._timer = gevent.spawn_later(self.flush_delay_s, self._timed_flush)

    def _timed_flush(self):
        self._timer = None
        try:
            self.flush()
        except Exception as exc:  # e.g. the disk is full: keep the rows, try again later
            log.warning('store: could not write %d timeline row(s) (%s); retrying in 1 s', len(self._pending), exc)
            if self._timer is None:
                self._timer = gevent.spawn_later(1.0, self._timed_flush)

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
        _check_fields(fields, CALL_FIELDS, 'call')
        status = fields.get('status')
        if status is not None and status not in CALL_STATUSES:
            raise ValueError('call status %r is not one of %s' % (status, CALL_STATUSES))
        self._upsert('calls', 'uuid', str(uuid), fields)

    def get_call(self, uuid):
        self.flush()
        return self._db.query_one('SELECT * FROM calls WHERE uuid=?', (str(uuid),))

    def list_calls(self, live_only=False, limit=100, offset=0):
        """Newest first (by start time, then creation). live_only: ringing or in-progress, not ended."""
        where = ''
        if live_only:
            where = "WHERE status IN ('ringing','in-progress') AND end_time IS NULL"
        self.flush()
        return self._db.query('SELECT * FROM calls %s ORDER BY COALESCE(start_time, created_at) DESC, rowid DESC '
                              'LIMIT ? OFFSET ?' % where, (int(limit), int(offset)))

    def count_calls(self, live_only=False):
        self.flush()
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
        if self.flush_delay_s <= 0 or len(self._pending) >= MAX_PENDING_EVENTS:
            self.flush()   # raises (and keeps the rows) if the database cannot take them
            self._db.execute('INSERT INTO call_events (call_uuid, ts, kind, detail) VALUES (?,?,?,?)', row)
            return
        with self._pending_lock:
            self._pending.append(row)
        if _native_thread_id() == self._hub_thread:
            self._schedule_flush()
        else:
            self.flush()   # no timer in a foreign OS thread: write at once

    def timeline(self, uuid):
        self.flush()
        rows = self._db.query('SELECT id, call_uuid, ts, kind, detail FROM call_events WHERE call_uuid=? '
                              'ORDER BY id', (str(uuid),))
        for row in rows:
            row['detail'] = json.loads(row['detail'])
        return rows

    # ---------------------------------------------------------------- streams

    def upsert_stream(self, stream_id, **fields):
        _check_fields(fields, STREAM_FIELDS, 'stream')
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
        self.flush()
        row = self._db.query_one('SELECT * FROM streams WHERE stream_id=?', (str(stream_id),))
        return self._stream_row(row)

    def list_streams(self, call_uuid):
        self.flush()
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
        _check_fields(fields, RECORDING_FIELDS, 'recording')
        fields['call_uuid'] = str(call_uuid)
        now = time.time()
        columns = list(fields)
        self._write('INSERT INTO recordings (recording_id, %s, created_at, updated_at) VALUES (%s)'
                         % (', '.join(columns), ','.join('?' * (len(columns) + 3))),
                         [str(recording_id)] + [fields[c] for c in columns] + [now, now])

    def update_recording(self, recording_id, **fields):
        """Update the given fields; KeyError if the recording does not exist."""
        _check_fields(fields, RECORDING_FIELDS, 'recording')
        if not fields:
            return
        assignments = ', '.join('%s=?' % c for c in fields)
        count = self._write('UPDATE recordings SET %s, updated_at=? WHERE recording_id=?' % assignments,
                            list(fields.values()) + [time.time(), str(recording_id)])
        if count == 0:
            raise KeyError('no recording %r' % (recording_id,))

    def get_recording(self, recording_id):
        self.flush()
        return self._db.query_one('SELECT * FROM recordings WHERE recording_id=?', (str(recording_id),))

    def list_recordings(self, call_uuid):
        self.flush()
        return self._db.query('SELECT * FROM recordings WHERE call_uuid=? ORDER BY created_at, rowid',
                              (str(call_uuid),))


def _flush_at_exit(ref):
    store = ref()
    if store is not None and store._pending:
        try:
            store.flush()
        except Exception as exc:
            log.error('store: %d timeline row(s) could not be written at exit: %s', len(store._pending), exc)
