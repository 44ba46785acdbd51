"""The outbox table in SQLite (WAL): its schema and every statement the outbox runs on it, each
committed when it returns. Which row goes when is the Outbox's business (outbox.py); this module
only reads and writes rows.

A row is one webhook: `pending` (waiting for its turn or its retry time), `in_flight` (an attempt is
running), then `delivered` or `failed`; `held` waits behind an earlier webhook of its call that
failed without its receiver ever accepting it (`holds` = 1 on that failed row), until
`retry_failed` or `release_held`. `order_key` is the call UUID (or a key of the row's own), the
unit of in-order delivery; `host` (the URL's host:port) the unit of per-host limits.

`head` = 1 marks the one row of an order_key that may be sent now (the earliest pending or in-flight
one), so that finding what is due reads a small partial index (`outbox_due`: pending heads by host
and due time; `INDEXED BY` where the planner, without statistics, would scan every pending row)
however many rows wait behind heads or for a dead receiver. The head moves on in the same
transaction that settles the row before it. `window_start` is when a row became its call's
head (its retry window runs from then), set again when it is queued anew.
"""
from urllib.parse import urlsplit

from records import Database

PENDING, IN_FLIGHT, DELIVERED, FAILED, HELD = 'pending', 'in_flight', 'delivered', 'failed', 'held'
WAITING = (PENDING, IN_FLIGHT, HELD, FAILED)   # what listings show by default (not delivered)

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
    delivered_at REAL,
    host TEXT NOT NULL DEFAULT '',
    head INTEGER NOT NULL DEFAULT 0,
    window_start REAL,
    holds INTEGER NOT NULL DEFAULT 0,
    signer TEXT NOT NULL DEFAULT 'vobiz'
);
CREATE INDEX IF NOT EXISTS outbox_call ON outbox(call_uuid, id);
"""
# columns added after the first release: a database of an older callfork gets them at open
ADDED_COLUMNS = (("host", "TEXT NOT NULL DEFAULT ''"), ("head", "INTEGER NOT NULL DEFAULT 0"),
                 ("window_start", "REAL"), ("holds", "INTEGER NOT NULL DEFAULT 0"),
                 ("signer", "TEXT NOT NULL DEFAULT 'vobiz'"))
INDEXES = """
DROP INDEX IF EXISTS outbox_active;
CREATE INDEX IF NOT EXISTS outbox_key ON outbox(order_key, id);
CREATE INDEX IF NOT EXISTS outbox_status ON outbox(status, id);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(host, next_attempt_at) WHERE status='pending' AND head=1;
CREATE INDEX IF NOT EXISTS outbox_expiry ON outbox(window_start) WHERE status='pending' AND head=1;
"""

_PUBLIC_FIELDS = ('id', 'call_uuid', 'event', 'url', 'host', 'method', 'encoding', 'status', 'attempts',
                  'last_status_code', 'last_error', 'idempotency_key', 'next_attempt_at', 'created_at',
                  'updated_at', 'delivered_at')
HELD_ERROR = 'held: webhook #%d of this call failed before it (callfork retry-webhooks sends both in order)'


def host_of(url):
    """The unit of per-host limits: the URL's host:port as written (lower case), '' if none."""
    try:
        return (urlsplit(url).netloc or '').lower()
    except ValueError:
        return ''


def public(row):
    return {k: row.get(k) for k in _PUBLIC_FIELDS}


class OutboxTable:
    def __init__(self, db_path, *, synchronous='NORMAL', max_bytes=None):
        self._db = Database(db_path, synchronous=synchronous, max_bytes=max_bytes)
        self._db.script(SCHEMA)
        have = {r['name'] for r in self._db.query('PRAGMA table_info(outbox)')}
        for name, kind in ADDED_COLUMNS:
            if name not in have:
                self._db.execute('ALTER TABLE outbox ADD COLUMN %s %s' % (name, kind))
        if 'host' not in have:
            for row in self._db.query("SELECT id, url FROM outbox WHERE status != 'delivered'"):
                self._db.execute('UPDATE outbox SET host=? WHERE id=?', (host_of(row['url']), row['id']))
        self._db.script(INDEXES)

    def close(self):
        self._db.close()

    # -- storing -------------------------------------------------------------------------------

    def insert(self, row, now, send_now=False):
        """Store one webhook (a dict: call_uuid, order_key, event, url, host, method, encoding, body,
        key, signer, max_attempts, and status/error when it is stored `failed`), in one transaction with the
        look at its call's earlier rows: `held` behind a failed one, `pending` behind a waiting one,
        else its call's head (`in_flight`, attempt 1, with `send_now`). Returns (id, status, head).
        sqlite3.Error when it could not be stored."""
        with self._db.transaction() as conn:
            return self._insert(conn, row, now, send_now)

    def insert_many(self, rows, now):
        """Store rows (as `insert`, none sent now) in one transaction, in order; [(id, status, head)]."""
        with self._db.transaction() as conn:
            return [self._insert(conn, row, now, False) for row in rows]

    @staticmethod
    def _insert(conn, row, now, send_now):
        status, error, head, window, attempts = row.get('status') or PENDING, row.get('error'), 0, None, 0
        if status == PENDING:
            ahead = conn.execute(
                "SELECT MAX(status IN ('pending','in_flight')) AS waiting, "
                "MAX(status='held' OR (status='failed' AND holds=1)) AS blocked, "
                "MAX(CASE WHEN status='failed' AND holds=1 THEN id END) AS blocker "
                "FROM outbox WHERE order_key=? AND status IN ('pending','in_flight','held','failed')",
                (row['order_key'],)).fetchone()
            if ahead['blocked']:
                status, error = HELD, HELD_ERROR % (ahead['blocker'] or 0)
            elif not ahead['waiting']:
                head, window = 1, now
                if send_now:
                    status, attempts = IN_FLIGHT, 1
        cursor = conn.execute(
            'INSERT INTO outbox (call_uuid, order_key, event, url, host, method, encoding, body, '
            'idempotency_key, status, attempts, max_attempts, next_attempt_at, last_error, '
            'created_at, updated_at, head, window_start, signer) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)',
            (row['call_uuid'], row['order_key'], row['event'], row['url'], row['host'], row['method'],
             row['encoding'], row['body'], row['key'], status, attempts, row['max_attempts'],
             row.get('created_at', now), error, row.get('created_at', now), now, head, window,
             row.get('signer') or 'vobiz'))
        return cursor.lastrowid, status, head

    # -- counting and listing ----------------------------------------------------------------

    def count(self, status):
        return self._db.scalar('SELECT COUNT(*) FROM outbox WHERE status=?', (status,))

    def counts(self):
        """(rows pending or in flight, rows held, {host: failed rows}): what the outbox then keeps
        up to date itself (a read of every such row: at start and after an operator's action)."""
        waiting = self.count(PENDING) + self.count(IN_FLIGHT)
        return waiting, self.count(HELD), self.failed_by_host()

    def oldest_waiting_created(self):
        """created_at of the oldest pending or in-flight row, or None."""
        times = [self._db.scalar('SELECT created_at FROM outbox WHERE status=? ORDER BY id LIMIT 1', (status,))
                 for status in (PENDING, IN_FLIGHT)]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def failed_by_host(self):
        return {r['host']: r['n'] for r in self._db.query(
            "SELECT host, COUNT(*) AS n FROM outbox WHERE status='failed' GROUP BY host")}

    def listing(self, statuses=WAITING, call_uuid=None, limit=100):
        """Rows with these statuses (all, or one call's), oldest first."""
        where = 'status IN (%s)' % ','.join('?' * len(statuses))
        args = list(statuses)
        if call_uuid is not None:
            where += ' AND call_uuid=?'
            args.append(str(call_uuid))
        rows = self._db.query('SELECT * FROM outbox WHERE %s ORDER BY id LIMIT ?' % where, args + [int(limit)])
        return [public(r) for r in rows]

    def deliveries(self, call_uuid):
        rows = self._db.query('SELECT * FROM outbox WHERE call_uuid=? ORDER BY id', (str(call_uuid),))
        return [public(r) for r in rows]

    def get(self, delivery_id):
        row = self._db.query_one('SELECT * FROM outbox WHERE id=?', (delivery_id,))
        return public(row) if row else None

    # -- what the scheduler reads and writes ---------------------------------------------------

    def reset_heads(self, now):
        """At start: each order_key's earliest pending or in-flight row is its head, whatever a
        previous process (or an older callfork) left; a head without a window gets one from now."""
        with self._db.transaction() as conn:
            conn.execute("UPDATE outbox SET head=0 WHERE head=1 AND status NOT IN ('pending','in_flight')")
            conn.execute(
                "UPDATE outbox SET head = (id IN (SELECT MIN(id) FROM outbox "
                "WHERE status IN ('pending','in_flight') GROUP BY order_key)) "
                "WHERE status IN ('pending','in_flight')")
            conn.execute("UPDATE outbox SET window_start=? WHERE status IN ('pending','in_flight') AND head=1 "
                         "AND window_start IS NULL", (now,))

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

    def host_dues(self):
        """{host: when its first pending head falls due}."""
        return {r['host']: r['due'] for r in self._db.query(
            "SELECT host, MIN(next_attempt_at) AS due FROM outbox INDEXED BY outbox_due "
            "WHERE status='pending' AND head=1 GROUP BY host")}

    def next_due(self, host):
        return self._db.scalar("SELECT MIN(next_attempt_at) FROM outbox WHERE status='pending' AND head=1 "
                               "AND host=?", (host,))

    def take_due(self, host, now, limit):
        """Up to `limit` pending heads of `host` due by `now`, marked in flight with their attempt
        counted (`attempts` as stored)."""
        rows = self._db.query(
            "SELECT * FROM outbox WHERE status='pending' AND head=1 AND host=? AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, id LIMIT ?", (host, now, limit))
        if rows:
            ids = [row['id'] for row in rows]
            self._db.execute("UPDATE outbox SET status='in_flight', attempts=attempts+1, updated_at=? "
                             "WHERE id IN (%s)" % ','.join('?' * len(ids)), [now] + ids)
            for row in rows:
                row['attempts'] += 1
        return rows

    def first_window_start(self):
        """The earliest window start of a pending head (for the window's expiry), or None."""
        return self._db.scalar("SELECT MIN(window_start) FROM outbox INDEXED BY outbox_expiry "
                               "WHERE status='pending' AND head=1")

    def expired_heads(self, cutoff, limit):
        """Pending heads whose window started at or before `cutoff`."""
        return self._db.query("SELECT * FROM outbox INDEXED BY outbox_expiry WHERE status='pending' AND head=1 "
                              "AND window_start <= ? ORDER BY window_start LIMIT ?", (cutoff, limit))

    def mark_delivered(self, row, status_code, now):
        """Delivered; returns the call's next row if it just became the head (dict: host,
        next_attempt_at) or None."""
        with self._db.transaction() as conn:
            conn.execute("UPDATE outbox SET status='delivered', head=0, last_status_code=?, last_error=NULL, "
                         "delivered_at=?, updated_at=? WHERE id=?", (status_code, now, now, row['id']))
            return _promote(conn, row['order_key'], now)

    def mark_pending(self, delivery_id, status_code, error, next_attempt_at, now):
        self._db.execute("UPDATE outbox SET status='pending', last_status_code=?, last_error=?, "
                         "next_attempt_at=?, updated_at=? WHERE id=?",
                         (status_code, error, next_attempt_at, now, delivery_id))

    def mark_failed(self, row, status_code, error, now, holds):
        """Failed. `holds`: its receiver never accepted it, so the call's later rows are held
        behind it; otherwise the call's next row becomes the head. Returns (the new head as
        mark_delivered returns it, or None; how many rows are now held behind it)."""
        with self._db.transaction() as conn:
            conn.execute("UPDATE outbox SET status='failed', head=0, holds=?, last_status_code=?, last_error=?, "
                         "updated_at=? WHERE id=?", (int(bool(holds)), status_code, error, now, row['id']))
            if not holds:
                return _promote(conn, row['order_key'], now), 0
            held = conn.execute("UPDATE outbox SET status='held', head=0, last_error=?, updated_at=? "
                                "WHERE order_key=? AND status='pending'",
                                (HELD_ERROR % row['id'], now, row['order_key'])).rowcount
            return None, held

    def retry_failed(self, now, call_uuid=None):
        """Failed rows (all, or one call's) and the rows held behind them pending again, in their
        order, with no attempt counted and a new window; returns how many failed rows."""
        where, args = '', []
        if call_uuid is not None:
            where, args = ' AND call_uuid=?', [str(call_uuid)]
        with self._db.transaction() as conn:
            count = conn.execute("SELECT COUNT(*) FROM outbox WHERE status='failed'" + where, args).fetchone()[0]
            conn.execute("UPDATE outbox SET status='pending', attempts=0, head=0, holds=0, window_start=NULL, "
                         "next_attempt_at=?, updated_at=? WHERE status IN ('failed','held')" + where,
                         [now, now] + args)
            _reset_heads_of(conn, where, args, now)
        return count

    def release_held(self, now, call_uuid=None):
        """The rows held behind failed ones (all, or one call's) pending again, in order; the failed
        ones stay failed and hold nothing any more. Returns how many were released."""
        where, args = '', []
        if call_uuid is not None:
            where, args = ' AND call_uuid=?', [str(call_uuid)]
        with self._db.transaction() as conn:
            conn.execute("UPDATE outbox SET holds=0 WHERE status='failed' AND holds=1" + where, args)
            count = conn.execute("UPDATE outbox SET status='pending', head=0, window_start=NULL, last_error=NULL, "
                                 "next_attempt_at=?, updated_at=? WHERE status='held'" + where,
                                 [now, now] + args).rowcount
            _reset_heads_of(conn, where, args, now)
        return count

    def prune(self, cutoff, limit=None):
        """Delete delivered rows delivered before `cutoff` (epoch s), at most `limit` of them; the count."""
        if limit is None:
            _, count = self._db.execute("DELETE FROM outbox WHERE status='delivered' AND delivered_at < ?",
                                        (cutoff,))
            return count
        _, count = self._db.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status='delivered' AND delivered_at < ? "
            "ORDER BY id LIMIT ?)", (cutoff, int(limit)))
        return count


def _promote(conn, order_key, now):
    """The order_key's earliest pending or in-flight row becomes its head (if it is not already)."""
    nxt = conn.execute("SELECT id, status, head, host, next_attempt_at FROM outbox WHERE order_key=? "
                       "AND status IN ('pending','in_flight') ORDER BY id LIMIT 1", (order_key,)).fetchone()
    if nxt is None or nxt['head']:
        return None
    conn.execute('UPDATE outbox SET head=1, window_start=COALESCE(window_start, ?) WHERE id=?', (now, nxt['id']))
    if nxt['status'] != PENDING:
        return None
    return {'host': nxt['host'], 'next_attempt_at': nxt['next_attempt_at']}


def _reset_heads_of(conn, where, args, now):
    """Heads again for the order_keys of the pending rows matching `where` (rows were queued anew,
    possibly ahead of a pending head): each key's earliest pending or in-flight row."""
    keys = "SELECT DISTINCT order_key FROM outbox WHERE status='pending'" + where
    conn.execute("UPDATE outbox SET head=0 WHERE status='pending' AND head=1 AND order_key IN (%s)" % keys, args)
    conn.execute(
        "UPDATE outbox SET head=1, window_start=COALESCE(window_start, ?) WHERE id IN (SELECT MIN(id) FROM outbox "
        "WHERE status IN ('pending','in_flight') AND order_key IN (%s) GROUP BY order_key) "
        "AND status='pending'" % keys, [now] + args)
