"""The outbox table in SQLite (WAL): its schema and every statement the outbox runs on it, each
committed when it returns. A row is one webhook: `pending` (waiting for its turn or its retry time),
`in_flight` (an attempt is running), then `delivered` or `failed`; `order_key` is its call UUID (or
a key of its own), the unit of in-order delivery. Which row goes when is the Outbox's business
(outbox.py); this module only reads and writes rows.
"""
import collections

from records import Database

PENDING, IN_FLIGHT, DELIVERED, FAILED = 'pending', 'in_flight', 'delivered', 'failed'

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_uuid TEXT NOT NULL DEFAULT '',
    order_key TEXT NOT NULL,
    event TEXT,
    url TEXT NOT NULL,
    method TEXT NOT NULL,
    encoding TEXT NOT NULL,
    body TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    next_attempt_at REAL NOT NULL,
    last_status_code INTEGER,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_active ON outbox(status, order_key, id);
CREATE INDEX IF NOT EXISTS outbox_call ON outbox(call_uuid, id);
"""

_PUBLIC_FIELDS = ('id', 'call_uuid', 'event', 'url', 'method', 'encoding', 'status', 'attempts',
                  'last_status_code', 'last_error', 'idempotency_key', 'next_attempt_at', 'created_at',
                  'updated_at', 'delivered_at')


class OutboxTable:
    def __init__(self, db_path, *, synchronous='NORMAL'):
        self._db = Database(db_path, synchronous=synchronous)
        self._db.script(SCHEMA)

    def close(self):
        self._db.close()

    # -- storing and listing -----------------------------------------------------------------

    def insert(self, *, call_uuid, order_key, event, url, method, encoding, body, key, status, attempts,
               max_attempts, now, error):
        """Store one webhook, due now; returns its id. sqlite3.Error when it could not be stored."""
        delivery_id, _ = self._db.execute(
            'INSERT INTO outbox (call_uuid, order_key, event, url, method, encoding, body, '
            'idempotency_key, status, attempts, max_attempts, next_attempt_at, last_error, '
            'created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)',
            (call_uuid, order_key, event, url, method, encoding, body, key,
             status, attempts, max_attempts, now, error, now, now))
        return delivery_id

    def depth(self):
        return self._db.scalar("SELECT COUNT(*) FROM outbox WHERE status IN ('pending','in_flight')")

    def failed_count(self):
        return self._db.scalar("SELECT COUNT(*) FROM outbox WHERE status='failed'")

    def delivered_count(self):
        return self._db.scalar("SELECT COUNT(*) FROM outbox WHERE status='delivered'")

    def prune(self, cutoff):
        """Delete delivered rows delivered before `cutoff` (epoch s); returns the count."""
        _, count = self._db.execute("DELETE FROM outbox WHERE status='delivered' AND delivered_at < ?", (cutoff,))
        return count

    def retry_failed(self, now, call_uuid=None):
        """Failed rows (all, or one call's) pending again with no attempt counted; returns the count."""
        where, args = "status='failed'", [now, now]
        if call_uuid is not None:
            where += " AND call_uuid=?"
            args.append(str(call_uuid))
        _, count = self._db.execute(
            "UPDATE outbox SET status='pending', attempts=0, next_attempt_at=?, updated_at=? WHERE " + where,
            args)
        return count

    def deliveries(self, call_uuid):
        rows = self._db.query('SELECT * FROM outbox WHERE call_uuid=? ORDER BY id', (str(call_uuid),))
        return [{k: row[k] for k in _PUBLIC_FIELDS} for row in rows]

    def get(self, delivery_id):
        row = self._db.query_one('SELECT * FROM outbox WHERE id=?', (delivery_id,))
        return {k: row[k] for k in _PUBLIC_FIELDS} if row else None

    # -- what the scheduler reads and writes ---------------------------------------------------

    def active_counts(self):
        """order_key -> its pending and in_flight rows."""
        return collections.Counter({
            r['order_key']: r['n'] for r in self._db.query(
                "SELECT order_key, COUNT(*) AS n FROM outbox WHERE status IN ('pending','in_flight') "
                "GROUP BY order_key")})

    def requeue_in_flight(self, now, ids=None):
        """In-flight rows (all, or those of `ids`) pending again, their attempt not counted; the count."""
        sql = ("UPDATE outbox SET status='pending', attempts=MAX(attempts-1, 0), next_attempt_at=?, "
               "updated_at=? WHERE status='in_flight'")
        args = [now, now]
        if ids is not None:
            sql += ' AND id IN (%s)' % ','.join('?' * len(ids))
            args.extend(ids)
        _, count = self._db.execute(sql, args)
        return count

    def take_due_heads(self, now, limit):
        """Up to `limit` pending rows due by `now` that head their order_key (nothing earlier of it
        pending or in flight), marked in flight with their attempt counted (`attempts` as stored)."""
        rows = self._db.query(
            "SELECT o.* FROM outbox o JOIN (SELECT MIN(id) AS head FROM outbox "
            "WHERE status IN ('pending','in_flight') GROUP BY order_key) h ON o.id = h.head "
            "WHERE o.status='pending' AND o.next_attempt_at <= ? ORDER BY o.next_attempt_at, o.id LIMIT ?",
            (now, limit))
        if rows:
            ids = [row['id'] for row in rows]
            self._db.execute("UPDATE outbox SET status='in_flight', attempts=attempts+1, updated_at=? "
                             "WHERE id IN (%s)" % ','.join('?' * len(ids)), [now] + ids)
            for row in rows:
                row['attempts'] += 1
        return rows

    def next_due_after(self, now):
        """When the first pending row due after `now` falls due, or None."""
        return self._db.scalar("SELECT MIN(next_attempt_at) FROM outbox WHERE status='pending' "
                               "AND next_attempt_at > ?", (now,))

    def mark_delivered(self, delivery_id, status_code, now):
        self._db.execute("UPDATE outbox SET status='delivered', last_status_code=?, last_error=NULL, "
                         "delivered_at=?, updated_at=? WHERE id=?", (status_code, now, now, delivery_id))

    def mark_pending(self, delivery_id, status_code, error, next_attempt_at, now):
        self._db.execute("UPDATE outbox SET status='pending', last_status_code=?, last_error=?, "
                         "next_attempt_at=?, updated_at=? WHERE id=?",
                         (status_code, error, next_attempt_at, now, delivery_id))

    def mark_failed(self, delivery_id, status_code, error, now):
        self._db.execute("UPDATE outbox SET status='failed', last_status_code=?, last_error=?, updated_at=? "
                         "WHERE id=?", (status_code, error, now, delivery_id))
