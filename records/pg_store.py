"""Call records in PostgreSQL (`[store] postgres_dsn`): the same tables and public interface as
records.Store (records/store.py), shared by every callfork node of a cluster.

Connections: records/pg_db.py (a small pool; every statement has a socket timeout, so a dead server
never holds the gevent hub). The tables are created at start (records/schema.py PG_SCHEMA); when the
server cannot be reached then, before the first write that reaches it. Every call record carries
the id of the node that created it (`node_id`); `close_calls_of(node_id, reason)` closes a node's
live calls (this node's at start; a dead node's when the cluster says it died), `call_hooks` keeps
what a cluster node's live call's hangup webhook needs (`set_hangup_hook`, `hangup_hooks`; a Vobiz
REST call's while it is placed and has no record yet: `placing_hooks_of`, `close_placed_call`), and
`node_beats()` the nodes' PostgreSQL heartbeats (records/node_beats.py).

Writes follow records/store.py (both through records/deferred_writes.py): timeline rows are grouped
and written with the next write, read, timer (`flush_delay_s`) or flush(). While PostgreSQL is
unreachable (pg_db.unavailable) a write is kept in memory, in order, and every later write queues
behind it; a retry (every second, and before a read) writes the whole backlog in one transaction
once the server is back. Calls never fail because of it: past `max_backlog` writes and rows, new
ones are dropped and counted. `health()` says the store is degraded meanwhile. Reads need the
server: while it is away they raise `PgUnavailable` (the REST API answers an error; no call path
depends on a read).

Use it from greenlets of the gevent hub's thread (the pool's semaphore and the retry timer are
gevent's); an OS thread's add_event is written at once.
"""
import contextlib
import json
import logging
import time

import gevent.lock

from .deferred_writes import MAX_BACKLOG, DeferredWrites
from .node_beats import NodeBeats
from .pg_db import PgDatabase, PgUnavailable, unavailable
from .schema import (PG_SCHEMA, RECORDING_FIELDS, call_fields, check_fields,
                     stream_fields)

log = logging.getLogger(__name__)
LIVE = "status IN ('ringing','in-progress') AND end_time IS NULL"


class PgStore(DeferredWrites):
    """Call records in PostgreSQL; see the module docstring. `node_id` goes into every call record
    this store creates."""

    _log = log
    _DRAIN_ERRORS = Exception
    _MESSAGES = {
        'closing': 'store: closing with %d write(s) PostgreSQL did not take (%s): they are lost',
        'wait': 'store: %d writes wait for PostgreSQL (%s); dropping what comes next',
        'refused': 'store: PostgreSQL is unavailable (%s); keeping writes in memory and retrying',
        'back': 'store: PostgreSQL is back; %d kept write(s) written'}

    def __init__(self, dsn, *, node_id='', flush_delay_s=0.2, max_backlog=MAX_BACKLOG, pool_size=4,
                 timeout_s=5.0, db=None):
        self._db = db or PgDatabase(dsn, pool_size=pool_size, timeout_s=timeout_s)
        self.node_id = str(node_id or '')
        self._init_deferred(flush_delay_s, max_backlog)
        self._draining = gevent.lock.Semaphore()   # one _drain at a time (it yields on every statement)
        self._schema_ready = False
        try:
            self._ensure_schema()
        except PgUnavailable as exc:
            self._refused(exc)

    def _ensure_schema(self):
        if self._schema_ready:
            return
        with self._db.transaction() as tx:
            tx.run('SELECT pg_advisory_xact_lock(7261001)')   # nodes starting together create it once
            for statement in PG_SCHEMA:
                tx.run(statement)
        self._schema_ready = True

    def health(self):
        """{'writable', 'error', 'kept', 'dropped', 'degraded'}, as records.Store.health() (degraded:
        PostgreSQL is away and writes wait in memory)."""
        return dict(super().health(), degraded=self.refused is not None, backend='postgresql')

    # ---------------------------------------------------------------- writing (records/store.py's model)

    @staticmethod
    def _refuses(exc):
        return isinstance(exc, Exception) and unavailable(exc)

    def _write_now(self, rows, statement, params, insert):
        self._ensure_schema()
        # without timeline rows it is one statement, or an update and the insert run only when that
        # changed nothing: each is atomic on its own, and BEGIN and COMMIT would cost two round trips
        with self._db.transaction(autocommit=not rows) as tx:
            return _apply(tx, rows, statement, params, insert)

    def _drain(self):
        """Every kept write, then the pending timeline rows, in one transaction; True if written.
        One at a time: two (the retry timer and a read's) would write the same kept writes and then
        each take its count off the backlog, dropping writes kept meanwhile."""
        with self._draining:
            return super()._drain()

    @contextlib.contextmanager
    def _kept_transaction(self):
        self._ensure_schema()
        with self._db.transaction() as tx:
            yield tx

    @staticmethod
    def _apply_kept(tx, item):
        tx.run('SAVEPOINT kept')
        try:
            _apply(tx, *item)
        except Exception as exc:
            if unavailable(exc):
                raise
            # a statement that can never succeed must not hold the others back for ever
            log.error('store: a kept write failed and is dropped: %s', exc)
            tx.run('ROLLBACK TO SAVEPOINT kept')
            return False
        return True

    @staticmethod
    def _apply_rows(tx, rows):
        _apply(tx, rows, None, None, None)

    def _read(self, sql, **params):
        self._settle()
        try:
            self._ensure_schema()
            return self._db.run(sql, **params)
        except PgUnavailable as exc:
            self._refused(exc)
            raise

    def _upsert(self, table, key_name, key, fields, extra=None):
        now = time.time()
        values = dict(fields)
        insert_values = dict(values, **(extra or {}))
        cols = [key_name] + list(insert_values) + ['created_at', 'updated_at']
        params = dict(insert_values, **{key_name: key, 'created_at': now, 'updated_at': now})
        insert = 'INSERT INTO %s (%s) VALUES (%s)' % (table, ', '.join(cols), ', '.join(':' + c for c in cols))
        if table == 'calls':
            updates = ', '.join(['%s=EXCLUDED.%s' % (c, c) for c in values] + ['updated_at=EXCLUDED.updated_at'])
            self._write('%s ON CONFLICT (%s) DO UPDATE SET %s' % (insert, key_name, updates), params)
            return
        assignments = ', '.join(['%s=:%s' % (c, c) for c in values] + ['updated_at=:updated_at'])
        self._write('UPDATE %s SET %s WHERE %s=:%s' % (table, assignments, key_name, key_name),
                    dict(values, **{key_name: key, 'updated_at': now}), insert=(insert, params))

    # ---------------------------------------------------------------- calls

    def upsert_call(self, uuid, **fields):
        """As records.Store.upsert_call; a new record gets this store's node_id."""
        fields = call_fields(fields)
        self._upsert('calls', 'uuid', str(uuid), fields, extra={'node_id': self.node_id})

    def get_call(self, uuid):
        rows = self._read('SELECT * FROM calls WHERE uuid=:uuid', uuid=str(uuid))
        return _plain(rows[0]) if rows else None

    def list_calls(self, live_only=False, limit=100, offset=0):
        where = 'WHERE ' + LIVE if live_only else ''
        rows = self._read('SELECT * FROM calls %s ORDER BY COALESCE(start_time, created_at) DESC, seq DESC '
                          'LIMIT :limit OFFSET :offset' % where, limit=int(limit), offset=int(offset))
        return [_plain(r) for r in rows]

    def count_calls(self, live_only=False):
        where = 'WHERE ' + LIVE if live_only else ''
        return self._read('SELECT COUNT(*) AS n FROM calls ' + where)[0]['n']

    def live_calls_of(self, node_id):
        """The live call records (ringing or in progress, not ended) created by `node_id`."""
        rows = self._read('SELECT * FROM calls WHERE node_id=:node AND %s ORDER BY seq' % LIVE, node=str(node_id))
        return [_plain(r) for r in rows]

    def close_calls_of(self, node_id, reason='callfork stopped during the call'):
        """Mark the live calls of `node_id` (a node that stopped or died) completed, with `reason`
        added to their error and a `service_restarted` timeline row; returns their UUIDs."""
        closed = [call['uuid'] for call in self.live_calls_of(node_id)
                  if self.close_call(call['uuid'], reason, node_id=node_id,
                                     note='%s; no hangup webhook was sent' % reason)]
        self.flush()
        return closed

    def close_call(self, uuid, reason, *, node_id='', note=None, end_time=None, **fields):
        """Close one live call record (completed, `reason` added to its error, `fields` such as
        hangup_cause set, a `service_restarted` timeline row saying `note` or `reason`): True if
        this call closed it, False if it was not live (another node closed it first). Written at
        once: PgUnavailable when PostgreSQL is away."""
        fields = call_fields(dict(fields, status='completed'))
        sets = ', '.join('%s=:%s' % (c, c) for c in fields)
        self._settle()
        self._ensure_schema()
        rows = self._db.run(
            "UPDATE calls SET %s, end_time=:end_time, updated_at=:now, error=CASE WHEN COALESCE(error, '')='' "
            "THEN :reason ELSE error || '; ' || :reason END WHERE uuid=:uuid AND %s RETURNING uuid" % (sets, LIVE),
            uuid=str(uuid), reason=reason, now=time.time(), end_time=end_time or time.time(), **fields)
        if rows:
            self.add_event(str(uuid), 'service_restarted', {'message': note or reason, 'node_id': str(node_id)})
        return bool(rows)

    # ---------------------------------------------------------------- cluster nodes

    def set_hangup_hook(self, uuid, hook):
        """Keep what call `uuid`'s hangup webhook needs (a JSON-able dict), for the node that closes
        the call should this node die; replaced by a later one."""
        self._write('INSERT INTO call_hooks (call_uuid, hook) VALUES (:uuid, :hook) ON CONFLICT (call_uuid) '
                    'DO UPDATE SET hook=EXCLUDED.hook', {'uuid': str(uuid), 'hook': json.dumps(hook)})

    def hangup_hooks(self, uuids):
        """{call uuid: hook} of those of `uuids` that have one."""
        if not uuids:
            return {}
        rows = self._read('SELECT call_uuid, hook FROM call_hooks WHERE call_uuid = ANY(:uuids)',
                          uuids=[str(u) for u in uuids])
        return {r['call_uuid']: json.loads(r['hook']) for r in rows}

    def placing_hooks_of(self, node_id):
        """{call uuid: hook} of the calls `node_id` was placing (a Vobiz REST call not yet at
        callfork: its hook has `placing` with the node's id) that have no call record (one that has a
        record reached callfork, failed, or was closed: not placing any more)."""
        rows = self._read("SELECT h.call_uuid, h.hook FROM call_hooks h WHERE (h.hook::jsonb)->'placing'->>'node' = "
                          ":node AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.uuid = h.call_uuid)", node=str(node_id))
        return {r['call_uuid']: json.loads(r['hook']) for r in rows}

    def close_placed_call(self, uuid, reason, *, node_id, note=None, **fields):
        """The record of a call `node_id` was placing when it died, which has none: written ended
        (completed, error `reason`, `fields` such as from_number and hangup_cause), with `node_id` and
        a `service_restarted` timeline row saying `note` or `reason`. True if this call wrote it,
        False if a record exists (another node closed the call first). Written at once:
        PgUnavailable when PostgreSQL is away."""
        fields = call_fields(dict(fields, status='completed', error=reason))
        now = time.time()
        params = dict(fields, uuid=str(uuid), node_id=str(node_id), created_at=now, updated_at=now)
        self._settle()
        self._ensure_schema()
        rows = self._db.run('INSERT INTO calls (%s) VALUES (%s) ON CONFLICT (uuid) DO NOTHING RETURNING uuid'
                            % (', '.join(params), ', '.join(':' + c for c in params)), **params)
        if rows:
            self.add_event(str(uuid), 'service_restarted', {'message': note or reason, 'node_id': str(node_id)})
        return bool(rows)

    def forget_hangup_hook(self, uuid):
        """The call ended where it ran: its hook is not needed any more."""
        self._write('DELETE FROM call_hooks WHERE call_uuid=:uuid', {'uuid': str(uuid)})

    def node_beats(self):
        """The nodes' PostgreSQL heartbeats (records/node_beats.py), on this store's connections."""
        return NodeBeats(self._db)

    # ---------------------------------------------------------------- timeline

    def timeline(self, uuid):
        rows = self._read('SELECT id, call_uuid, ts, kind, detail FROM call_events WHERE call_uuid=:uuid '
                          'ORDER BY id', uuid=str(uuid))
        for row in rows:
            row['detail'] = json.loads(row['detail'])
        return rows

    # ---------------------------------------------------------------- streams

    def upsert_stream(self, stream_id, **fields):
        stream_fields(fields)
        if 'call_uuid' not in fields:
            try:
                self._ensure_schema()
                known = self._db.run('SELECT 1 AS one FROM streams WHERE stream_id=:id', id=str(stream_id))
            except PgUnavailable:
                known = True   # cannot tell now: the kept write tells when PostgreSQL is back
            if not known and not self._backlog:
                raise ValueError('a new stream needs call_uuid')
        self._upsert('streams', 'stream_id', str(stream_id), fields)

    def get_stream(self, stream_id):
        rows = self._read('SELECT * FROM streams WHERE stream_id=:id', id=str(stream_id))
        return _stream_row(rows[0]) if rows else None

    def list_streams(self, call_uuid):
        rows = self._read('SELECT * FROM streams WHERE call_uuid=:uuid ORDER BY created_at, seq',
                          uuid=str(call_uuid))
        return [_stream_row(r) for r in rows]

    # ---------------------------------------------------------------- recordings

    def add_recording(self, recording_id, call_uuid, **fields):
        check_fields(fields, RECORDING_FIELDS, 'recording')
        fields['call_uuid'] = str(call_uuid)
        now = time.time()
        params = dict(fields, recording_id=str(recording_id), created_at=now, updated_at=now)
        cols = list(params)
        self._write('INSERT INTO recordings (%s) VALUES (%s)' % (', '.join(cols), ', '.join(':' + c for c in cols)),
                    params)

    def update_recording(self, recording_id, **fields):
        """Update the given fields; KeyError if the recording does not exist."""
        check_fields(fields, RECORDING_FIELDS, 'recording')
        if not fields:
            return
        assignments = ', '.join('%s=:%s' % (c, c) for c in fields)
        count = self._write('UPDATE recordings SET %s, updated_at=:updated_at WHERE recording_id=:recording_id'
                            % assignments, dict(fields, updated_at=time.time(), recording_id=str(recording_id)))
        if count == 0:   # (None: kept until PostgreSQL is back)
            raise KeyError('no recording %r' % (recording_id,))

    def get_recording(self, recording_id):
        rows = self._read('SELECT * FROM recordings WHERE recording_id=:id', id=str(recording_id))
        return _plain(rows[0]) if rows else None

    def list_recordings(self, call_uuid):
        rows = self._read('SELECT * FROM recordings WHERE call_uuid=:uuid ORDER BY created_at, seq',
                          uuid=str(call_uuid))
        return [_plain(r) for r in rows]


def _apply(tx, rows, statement, params, insert):
    """Timeline rows, then the statement (and its insert when the statement changed no row), on an
    open transaction; the statement's row count."""
    for start in range(0, len(rows), 200):
        chunk = rows[start:start + 200]
        args = {}
        values = []
        for i, (call_uuid, ts, kind, detail) in enumerate(chunk):
            values.append('(:c%d, :t%d, :k%d, :d%d)' % (i, i, i, i))
            args.update({'c%d' % i: call_uuid, 't%d' % i: ts, 'k%d' % i: kind, 'd%d' % i: detail})
        tx.run('INSERT INTO call_events (call_uuid, ts, kind, detail) VALUES ' + ', '.join(values), **args)
    count = 0
    if statement:
        tx.run(statement, **(params or {}))
        count = tx.row_count()
    if insert is not None and count == 0:
        tx.run(insert[0], **insert[1])
    return count


def _plain(row):
    row.pop('seq', None)
    return row


def _stream_row(row):
    row = _plain(row)
    if row.get('bidirectional') is not None:
        row['bidirectional'] = bool(row['bidirectional'])
    return row
