"""The outbox table in PostgreSQL, shared by the nodes of a cluster: its schema and every statement
webhooks/pg_outbox.py runs on it, each committed when it returns.

The rows are outbox_table.py's (same columns, statuses, `head` and `holds` meaning) plus a lease:
an `in_flight` row belongs to `lease_owner` (a node id) until `lease_until` (epoch seconds of the
PostgreSQL server's clock, so the nodes' clocks need not agree on it). A node claims due call
heads with `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING *`, so two nodes
never claim the same row; it records the outcome only while it still holds the lease (the update
names its node id: a node that lost its lease changes nothing). A row whose lease ran out (its node
died, or lost PostgreSQL for longer than the lease) is pending again for any node, its interrupted
attempt not counted, with the same idempotency key.

Per-call order: only a call's head (its earliest pending or in-flight row) is claimable, and the
head moves on in the transaction that settles the row before it. Every transaction that looks at a
call's rows to decide a head (storing a row, settling one, an operator's retry) first takes the
call's advisory lock (`pg_advisory_xact_lock(NAMESPACE, hashtext(order_key))`), so two greenlets or
two nodes never both decide a head for one call.
"""
from .outbox_table import HELD, HELD_ERROR, IN_FLIGHT, PENDING, WAITING, public

NAMESPACE = 7261002          # the first key of the outbox's advisory locks (the second: the order key's hash)
DB_NOW = 'EXTRACT(EPOCH FROM clock_timestamp())::double precision'
LEASE_END = DB_NOW + ' + CAST(:lease AS double precision)'   # now on the server + the :lease parameter

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
    id BIGSERIAL PRIMARY KEY, call_uuid TEXT NOT NULL DEFAULT '', order_key TEXT NOT NULL, event TEXT,
    url TEXT NOT NULL, method TEXT NOT NULL, encoding TEXT NOT NULL, body TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE, status TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL, next_attempt_at DOUBLE PRECISION NOT NULL, last_status_code BIGINT,
    last_error TEXT, created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    delivered_at DOUBLE PRECISION, host TEXT NOT NULL DEFAULT '', head BIGINT NOT NULL DEFAULT 0,
    window_start DOUBLE PRECISION, holds BIGINT NOT NULL DEFAULT 0, signer TEXT NOT NULL DEFAULT 'vobiz',
    lease_owner TEXT, lease_until DOUBLE PRECISION)""",
    "CREATE INDEX IF NOT EXISTS outbox_call ON outbox(call_uuid, id)",
    "CREATE INDEX IF NOT EXISTS outbox_key ON outbox(order_key, id)",
    "CREATE INDEX IF NOT EXISTS outbox_status ON outbox(status, id)",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox(host, next_attempt_at) WHERE status='pending' AND head=1",
    "CREATE INDEX IF NOT EXISTS outbox_expiry ON outbox(window_start) WHERE status='pending' AND head=1",
    "CREATE INDEX IF NOT EXISTS outbox_leases ON outbox(lease_until) WHERE status='in_flight'",
    # what every pass reads (counts, the oldest waiting row, pruning) has an index holding only its
    # rows: the delivered ones, nearly all of a busy table, are never walked, whatever the planner's
    # statistics say (they lag behind rows changing status; tests/test_pg_outbox_plans.py)
    "CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox(status, id) WHERE status IN ('pending','in_flight','held')",
    "CREATE INDEX IF NOT EXISTS outbox_failed ON outbox(host) WHERE status='failed'",
    "CREATE INDEX IF NOT EXISTS outbox_delivered ON outbox(delivered_at) WHERE status='delivered'",
)


def _lock_key(tx, order_key):
    tx.run('SELECT pg_advisory_xact_lock(%d, hashtext(:key))' % NAMESPACE, key=order_key)


class PgOutboxTable:
    """The statements; `db` is a records.pg_db.PgDatabase. PgUnavailable when PostgreSQL is away."""

    def __init__(self, db):
        self._db = db
        self.ready = False

    def create(self):
        """The table and its indexes (nodes starting together create them once)."""
        with self._db.transaction() as tx:
            tx.run('SELECT pg_advisory_xact_lock(%d)' % NAMESPACE)
            for statement in SCHEMA:
                tx.run(statement)
        self.ready = True

    # -- storing -------------------------------------------------------------------------------

    def insert(self, row, now, send_now=False, node='', lease_s=30.0):
        """Store one webhook (as OutboxTable.insert); with `send_now` a head is stored in flight,
        attempt 1, leased to `node`. Returns (id, status, head, window_start)."""
        with self._db.transaction() as tx:
            return self._insert(tx, row, now, send_now, node, lease_s)

    def insert_many(self, rows, now):
        """Store webhooks kept in memory; one whose key is stored already (its INSERT committed
        although the node saw the statement fail, e.g. past the socket timeout) is left as it is."""
        with self._db.transaction() as tx:
            return [self._stored(tx, row) or self._insert(tx, row, now, False, '', 0) for row in rows]

    @staticmethod
    def _stored(tx, row):
        found = tx.run('SELECT id, status, head, window_start FROM outbox WHERE idempotency_key=:key', key=row['key'])
        return tuple(found[0].values()) if found else None

    @staticmethod
    def _insert(tx, row, now, send_now, node, lease_s):
        status, error, head, window, attempts = row.get('status') or PENDING, row.get('error'), 0, None, 0
        owner, lease = None, None
        if status == PENDING:
            _lock_key(tx, row['order_key'])
            # a key the caller chose may be stored by another node (under the same call's lock)
            found = PgOutboxTable._stored(tx, row) if row.get('dedupe') else None
            if found:
                return found[0], 'stored', found[2], found[3]
            ahead = tx.run(
                "SELECT BOOL_OR(status IN ('pending','in_flight')) AS waiting, "
                "BOOL_OR(status='held' OR (status='failed' AND holds=1)) AS blocked, "
                "MAX(CASE WHEN status='failed' AND holds=1 THEN id END) AS blocker "
                "FROM outbox WHERE order_key=:key AND status IN ('pending','in_flight','held','failed')",
                key=row['order_key'])[0]
            if ahead['blocked']:
                status, error = HELD, HELD_ERROR % (ahead['blocker'] or 0)
            elif not ahead['waiting']:
                head, window = 1, now
                if send_now:
                    status, attempts, owner, lease = IN_FLIGHT, 1, node, float(lease_s)
        inserted = tx.run(
            'INSERT INTO outbox (call_uuid, order_key, event, url, host, method, encoding, body, idempotency_key, '
            'status, attempts, max_attempts, next_attempt_at, last_error, created_at, updated_at, head, '
            'window_start, signer, lease_owner, lease_until) VALUES (:call_uuid, :order_key, :event, :url, :host, '
            ':method, :encoding, :body, :key, :status, :attempts, :max_attempts, :created, :error, :created, :now, '
            ':head, :window, :signer, :owner, CASE WHEN CAST(:lease AS double precision) > 0 THEN %s END) '
            'RETURNING id' % LEASE_END,
            call_uuid=row['call_uuid'], order_key=row['order_key'], event=row['event'], url=row['url'],
            host=row['host'], method=row['method'], encoding=row['encoding'], body=row['body'], key=row['key'],
            status=status, attempts=attempts, max_attempts=row['max_attempts'],
            created=float(row.get('created_at', now)), error=error, now=float(now), head=head, window=window,
            signer=row.get('signer') or 'vobiz', owner=owner, lease=float(lease or 0.0))
        return inserted[0]['id'], status, head, window

    # -- counting and listing ----------------------------------------------------------------

    def count(self, status):
        return self._db.run('SELECT COUNT(*) AS n FROM outbox WHERE status=:s', s=status)[0]['n']

    def counts(self):
        """(rows pending or in flight, rows held, {host: failed rows}, oldest waiting created_at)."""
        by_status = {r['status']: r['n'] for r in self._db.run(
            "SELECT status, COUNT(*) AS n FROM outbox WHERE status IN ('pending','in_flight','held') GROUP BY status")}
        failed = {r['host']: r['n'] for r in self._db.run(
            "SELECT host, COUNT(*) AS n FROM outbox WHERE status='failed' GROUP BY host")}
        oldest = self._db.run(
            "SELECT LEAST((SELECT created_at FROM outbox WHERE status='pending' ORDER BY id LIMIT 1), "
            "(SELECT created_at FROM outbox WHERE status='in_flight' ORDER BY id LIMIT 1)) AS t")[0]['t']
        return (by_status.get(PENDING, 0) + by_status.get(IN_FLIGHT, 0), by_status.get(HELD, 0), failed, oldest)

    def listing(self, statuses=WAITING, call_uuid=None, limit=100):
        where, args = 'status = ANY(:statuses)', {'statuses': list(statuses)}
        if call_uuid is not None:
            where += ' AND call_uuid=:call'
            args['call'] = str(call_uuid)
        rows = self._db.run('SELECT * FROM outbox WHERE %s ORDER BY id LIMIT :limit' % where, limit=int(limit), **args)
        return [public(r) for r in rows]

    def deliveries(self, call_uuid):
        return [public(r) for r in self._db.run('SELECT * FROM outbox WHERE call_uuid=:c ORDER BY id',
                                                c=str(call_uuid))]

    def get(self, delivery_id):
        rows = self._db.run('SELECT * FROM outbox WHERE id=:id', id=int(delivery_id))
        return public(rows[0]) if rows else None

    # -- leases and the scheduler --------------------------------------------------------------

    def requeue(self, now, node=None, ids=None, keep=()):
        """In-flight rows pending again, their attempt not counted: those whose lease ran out, and
        (with `node`) that node's; with `ids`, only that node's among them; never those of `keep`.
        Returns how many."""
        expired = 'lease_until < %s' % DB_NOW
        args = {'node': node} if node is not None else {}
        if node is None:
            where = expired
        elif ids is not None:
            where = 'lease_owner=:node AND id = ANY(:ids)'
            args['ids'] = [int(i) for i in ids]
        else:
            where = '(%s OR lease_owner=:node)' % expired
        if keep:
            where += ' AND NOT (id = ANY(:keep))'
            args['keep'] = [int(i) for i in keep]
        with self._db.transaction() as tx:
            tx.run("UPDATE outbox SET status='pending', attempts=GREATEST(attempts-1, 0), next_attempt_at=:now, "
                   "lease_owner=NULL, lease_until=NULL, updated_at=:now WHERE status='in_flight' AND " + where,
                   now=float(now), **args)
            return tx.row_count()

    def renew(self, ids, node, lease_s):
        """This node's in-flight rows among `ids` leased for `lease_s` more; how many it still holds."""
        with self._db.transaction() as tx:
            tx.run("UPDATE outbox SET lease_until=%s WHERE id = ANY(:ids) AND status='in_flight' "
                   "AND lease_owner=:node" % LEASE_END, ids=[int(i) for i in ids], node=node, lease=float(lease_s))
            return tx.row_count()

    def host_dues(self):
        """{host: when its first pending head falls due}."""
        return {r['host']: r['due'] for r in self._db.run(
            "SELECT host, MIN(next_attempt_at) AS due FROM outbox WHERE status='pending' AND head=1 GROUP BY host")}

    def claim(self, host, now, limit, node, lease_s):
        """Up to `limit` pending heads of `host` due by `now`, in flight for `node` until its lease
        ends, their attempt counted; rows other nodes are claiming are skipped."""
        return self._db.run(
            "UPDATE outbox SET status='in_flight', attempts=attempts+1, lease_owner=:node, "
            "lease_until=%s, updated_at=:now WHERE id IN (SELECT id FROM outbox WHERE status='pending' AND head=1 "
            "AND host=:host AND next_attempt_at <= :now ORDER BY next_attempt_at, id LIMIT :limit "
            "FOR UPDATE SKIP LOCKED) AND status='pending' AND head=1 RETURNING *" % LEASE_END,
            node=node, lease=float(lease_s), now=float(now), host=host, limit=int(limit))

    def expired_heads(self, cutoff, limit):
        """Pending heads whose retry window started at or before `cutoff`."""
        return self._db.run("SELECT * FROM outbox WHERE status='pending' AND head=1 AND window_start <= :cutoff "
                            "ORDER BY window_start LIMIT :limit", cutoff=float(cutoff), limit=int(limit))

    def mark_delivered(self, row, status_code, now, node):
        """Delivered (if `node` still holds its lease); returns (recorded, the call's new head as
        {host, next_attempt_at} or None)."""
        with self._db.transaction() as tx:
            _lock_key(tx, row['order_key'])
            tx.run("UPDATE outbox SET status='delivered', head=0, last_status_code=:code, last_error=NULL, "
                   "delivered_at=:now, updated_at=:now, lease_owner=NULL, lease_until=NULL "
                   "WHERE id=:id AND status='in_flight' AND lease_owner=:node",
                   code=status_code, now=float(now), id=row['id'], node=node)
            if tx.row_count() != 1:
                return False, None
            return True, _promote(tx, row['order_key'], now)

    def mark_pending(self, row, status_code, error, next_attempt_at, now, node):
        """Pending again, due at `next_attempt_at` (if `node` still holds its lease); recorded?"""
        with self._db.transaction() as tx:
            tx.run("UPDATE outbox SET status='pending', last_status_code=:code, last_error=:error, "
                   "next_attempt_at=:at, updated_at=:now, lease_owner=NULL, lease_until=NULL "
                   "WHERE id=:id AND status='in_flight' AND lease_owner=:node",
                   code=status_code, error=error, at=float(next_attempt_at), now=float(now), id=row['id'],
                   node=node)
            return tx.row_count() == 1

    def mark_failed(self, row, status_code, error, now, holds, node=None):
        """Failed (as OutboxTable.mark_failed). With `node`: an in-flight row it holds the lease of;
        without: a pending head (its window ended). Returns (recorded, new head or None, held count)."""
        with self._db.transaction() as tx:
            _lock_key(tx, row['order_key'])
            owned = "status='in_flight' AND lease_owner=:node" if node is not None else "status='pending' AND head=1"
            args = {'node': node} if node is not None else {}
            tx.run("UPDATE outbox SET status='failed', head=0, holds=:holds, last_status_code=:code, "
                   "last_error=:error, updated_at=:now, lease_owner=NULL, lease_until=NULL WHERE id=:id AND "
                   + owned, holds=int(bool(holds)), code=status_code, error=error, now=float(now), id=row['id'],
                   **args)
            if tx.row_count() != 1:
                return False, None, 0
            if not holds:
                return True, _promote(tx, row['order_key'], now), 0
            tx.run("UPDATE outbox SET status='held', head=0, last_error=:error, updated_at=:now "
                   "WHERE order_key=:key AND status='pending'", error=HELD_ERROR % row['id'], now=float(now),
                   key=row['order_key'])
            return True, None, tx.row_count()

    def retry_failed(self, now, call_uuid=None):
        """As OutboxTable.retry_failed (under the calls' locks)."""
        where, args = '', {}
        if call_uuid is not None:
            where, args = ' AND call_uuid=:call', {'call': str(call_uuid)}
        with self._db.transaction() as tx:
            _lock_keys(tx, "status IN ('failed','held')" + where, args)
            count = tx.run("SELECT COUNT(*) AS n FROM outbox WHERE status='failed'" + where, **args)[0]['n']
            tx.run("UPDATE outbox SET status='pending', attempts=0, head=0, holds=0, window_start=NULL, "
                   "next_attempt_at=:now, updated_at=:now WHERE status IN ('failed','held')" + where,
                   now=float(now), **args)
            _reset_heads_of(tx, where, args, now)
        return count

    def release_held(self, now, call_uuid=None):
        """As OutboxTable.release_held (under the calls' locks)."""
        where, args = '', {}
        if call_uuid is not None:
            where, args = ' AND call_uuid=:call', {'call': str(call_uuid)}
        with self._db.transaction() as tx:
            _lock_keys(tx, "status IN ('failed','held')" + where, args)
            tx.run("UPDATE outbox SET holds=0 WHERE status='failed' AND holds=1" + where, **args)
            tx.run("UPDATE outbox SET status='pending', head=0, window_start=NULL, last_error=NULL, "
                   "next_attempt_at=:now, updated_at=:now WHERE status='held'" + where, now=float(now), **args)
            count = tx.row_count()
            _reset_heads_of(tx, where, args, now)
        return count

    def prune(self, cutoff, limit=None):
        """Delete delivered rows delivered before `cutoff`, at most `limit`; the count."""
        with self._db.transaction() as tx:
            if limit is None:
                tx.run("DELETE FROM outbox WHERE status='delivered' AND delivered_at < :cutoff", cutoff=float(cutoff))
            else:
                tx.run("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status='delivered' AND "
                       "delivered_at < :cutoff ORDER BY delivered_at LIMIT :limit)", cutoff=float(cutoff),
                       limit=int(limit))
            return tx.row_count()


def _lock_keys(tx, where, args):
    tx.run('SELECT pg_advisory_xact_lock(%d, hashtext(order_key)) FROM (SELECT DISTINCT order_key FROM outbox '
           'WHERE %s ORDER BY order_key) AS keys' % (NAMESPACE, where), **args)


def _promote(tx, order_key, now):
    """The key's earliest pending or in-flight row becomes its head; returns it if pending."""
    rows = tx.run("SELECT id, status, head, host, next_attempt_at FROM outbox WHERE order_key=:key "
                  "AND status IN ('pending','in_flight') ORDER BY id LIMIT 1", key=order_key)
    if not rows or rows[0]['head']:
        return None
    nxt = rows[0]
    tx.run('UPDATE outbox SET head=1, window_start=COALESCE(window_start, :now) WHERE id=:id', now=float(now),
           id=nxt['id'])
    if nxt['status'] != PENDING:
        return None
    return {'host': nxt['host'], 'next_attempt_at': nxt['next_attempt_at']}


def _reset_heads_of(tx, where, args, now):
    keys = "SELECT DISTINCT order_key FROM outbox WHERE status='pending'" + where
    tx.run("UPDATE outbox SET head=0 WHERE status='pending' AND head=1 AND order_key IN (%s)" % keys, **args)
    tx.run("UPDATE outbox SET head=1, window_start=COALESCE(window_start, :now) WHERE id IN (SELECT MIN(id) "
           "FROM outbox WHERE status IN ('pending','in_flight') AND order_key IN (%s) GROUP BY order_key) "
           "AND status='pending'" % keys, now=float(now), **args)

