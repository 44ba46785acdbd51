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
once). Calls, streams, recordings and the outbox are never held back. (The bookkeeping, shared with
records/pg_store.py, is records/deferred_writes.py.)

A database that refuses a write for now (full disk, I/O error, read-only file, another writer:
`db.write_refused`) does not fail the caller: the write (and the timeline rows taken with it) is kept
in memory, in order, and every later write queues behind it until a retry (every second, and before
a read) gets the whole backlog in, in one transaction. Meanwhile reads see what the file holds, and
`health()` says so. The backlog is bounded (`max_backlog` writes and rows): past it, new writes are
dropped and counted (`health()['dropped']`), never raised into a call.
"""
import atexit
import json
import logging
import sqlite3
import time
import weakref

from .db import Database, write_refused
from .deferred_writes import MAX_BACKLOG, DeferredWrites
from .schema import (RECORDING_FIELDS, SCHEMA, add_missing_columns, call_fields, check_fields,
                     stream_fields)

log = logging.getLogger(__name__)

class Store(DeferredWrites):
    """Call records. See the module docstring for the threading model. `busy_timeout_ms`: how long a
    write waits while another connection writes the file before it is kept for later; `max_bytes`:
    the database file's size cap (records.Database); `max_backlog`: how many refused writes and
    timeline rows are kept in memory."""

    _log = log
    _DRAIN_ERRORS = sqlite3.Error

    def __init__(self, db_path, *, synchronous='NORMAL', flush_delay_s=0.2, busy_timeout_ms=2000, max_bytes=None,
                 max_backlog=MAX_BACKLOG):
        self._db = Database(db_path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms, max_bytes=max_bytes)
        self._db.script(SCHEMA)
        add_missing_columns(self._db)   # calls.node_id (records/schema.py)
        self._init_deferred(flush_delay_s, max_backlog)
        atexit.register(_flush_at_exit, weakref.ref(self))   # a clean exit writes what is kept

    # ---------------------------------------------------------------- grouped writes
    # (records/deferred_writes.py keeps the rows and refused writes; the timer, close() and the exit
    # hook write them; see the module docstring). What is SQLite's:

    @staticmethod
    def _refuses(exc):
        return isinstance(exc, sqlite3.Error) and write_refused(exc)

    def _write_now(self, rows, statement, args, insert):
        if args is None:
            args = ()
        if not rows and insert is None:
            return self._db.execute(statement, args)[1] if statement else 0
        with self._db.transaction() as conn:
            return _apply(conn, rows, statement, args, insert)

    def _kept_transaction(self):
        return self._db.transaction()

    @staticmethod
    def _apply_kept(conn, item):
        try:
            _apply(conn, *item)
        except sqlite3.Error as exc:
            if write_refused(exc):
                raise
            # a statement that can never succeed must not hold the others back for ever
            log.error('store: a kept write failed and is dropped: %s', exc)
            return False
        return True

    @staticmethod
    def _apply_rows(conn, rows):
        _apply(conn, rows, None, (), None)

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
        fields = call_fields(fields)
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

    def timeline(self, uuid):
        self._settle()
        rows = self._db.query('SELECT id, call_uuid, ts, kind, detail FROM call_events WHERE call_uuid=? '
                              'ORDER BY id', (str(uuid),))
        for row in rows:
            row['detail'] = json.loads(row['detail'])
        return rows

    # ---------------------------------------------------------------- streams

    def upsert_stream(self, stream_id, **fields):
        stream_fields(fields)
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
