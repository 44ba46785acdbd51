"""The durable webhook outbox: status callbacks are committed to SQLite (WAL) before `enqueue` returns,
then delivered by a worker greenlet with retries, backoff with full jitter, per-call ordering and an
idempotency key, and survive a crash (`kill -9`) of the process.

Ordering: deliveries that share a call UUID go out strictly in enqueue order (the next one waits until
the earlier one is delivered or failed); different calls go in parallel, at most `concurrency` at once.
One Outbox (one process) owns a database file's outbox table at a time; use it from the gevent hub's
thread (its wake-up events are gevent events).

Cost per webhook (BENCHMARKS.md, C4): a webhook with nothing ahead of it for its call and a free slot
is stored already `in_flight` (attempt 1) and sent straight from `enqueue`; otherwise the scheduler
picks it up. When rows fall due is kept in memory (retry times; rows of a previous run are looked up
until none is left), and each call's count of undelivered rows too (loaded at start, kept by enqueue
and outcomes), so the common case is two commits per webhook (the row, its outcome) and no polling.
"""
import collections
import heapq
import json
import logging
import random
import sqlite3
import time
import uuid as uuid_module

import gevent
import gevent.event
import gevent.pool

from records import Database
from .http_client import (ACCEPT_ENCODING, RequestFailed, build_request, default_user_agent, drain, new_pool,
                          release, send)
from .signing import param_pairs, sign_headers
from .urls import UrlError, clean_url

log = logging.getLogger(__name__)

PENDING, IN_FLIGHT, DELIVERED, FAILED = 'pending', 'in_flight', 'delivered', 'failed'
RETRYABLE_STATUS = frozenset({408, 429})
RESPONSE_DRAIN_BYTES = 64 * 1024
IDLE_RECHECK_S = 5.0

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


class OutboxError(Exception):
    """The outbox could not store a webhook (the caller must know: nothing was queued)."""


class Outbox:
    """Durable, ordered, retrying webhook delivery. See the module docstring.

    retries: extra attempts after the first (attempts = 1 + retries) for connection errors, timeouts,
    5xx, 408 and 429; other non-2xx answers fail at once. Backoff before attempt n+1 is
    uniform(0, min(backoff_max_s, backoff_base_s * 2**(n-1))) (full jitter), raised to a Retry-After
    header when there is one (capped at backoff_max_s). Redirects are not followed (a 3xx fails:
    signatures are for the configured URL).
    """

    def __init__(self, db_path, *, auth_token, retries=3, backoff_base_s=2.0, backoff_max_s=30.0,
                 connect_timeout_s=3, read_timeout_s=10, concurrency=16, user_agent=None, v3_mode='docs',
                 allow_private=True, synchronous='NORMAL'):
        if not auth_token:
            raise ValueError('Outbox needs an auth token to sign webhooks')
        if concurrency < 1:
            raise ValueError('concurrency must be >= 1')
        self.auth_token = auth_token
        self.retries = max(0, int(retries))
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.timeouts = (connect_timeout_s, read_timeout_s)
        self.concurrency = int(concurrency)
        self.user_agent = user_agent or default_user_agent()
        self.v3_mode = v3_mode
        self.allow_private = allow_private
        self._db = Database(db_path, synchronous=synchronous)
        self._db.script(SCHEMA)
        self._pool = new_pool(pool_size=self.concurrency)  # never more than `concurrency` in flight
        self._group = gevent.pool.Group()       # the delivery greenlets (capacity: self._in_flight)
        self._wake = gevent.event.Event()      # set: the scheduler should look again now
        self._changed = gevent.event.Event()   # set: some delivery finished (flush waits on it)
        self._scheduler = None
        self._in_flight = set()                # ids this instance is sending (owned by this hub)
        self._orphans = set()                  # ids left in_flight in the DB by a failed update
        self._due = []                         # heap: times at which pending rows fall due (retries)
        self._scan_due = False                 # True: _due may miss rows stored before start()
        self._active = collections.Counter()   # order_key -> its pending/in_flight rows (loaded at start)
        self._active_total = 0
        self._stopping = False

    # ---------------------------------------------------------------- enqueue and inspection

    def enqueue(self, call_uuid, url, method, params, *, encoding='form', event=None):
        """Store one webhook and return its delivery id. The row is committed before this returns.
        A bad URL or method is stored as `failed` (with the reason), never dropped silently."""
        if encoding not in ('form', 'json'):
            raise ValueError('encoding must be "form" or "json", not %r' % (encoding,))
        now = time.time()
        call_uuid = str(call_uuid or '')
        key = str(uuid_module.uuid4())
        method_text = str(method or 'POST').upper()
        status, error, target = PENDING, None, url if isinstance(url, str) else repr(url)
        if method_text not in ('GET', 'POST'):
            status, error = FAILED, 'bad method %r (GET or POST)' % (method,)
        else:
            try:
                target = clean_url(url, allow_private=self.allow_private)
            except UrlError as exc:
                status, error = FAILED, 'bad_url: %s' % (exc,)
        try:
            if encoding == 'form':
                body = json.dumps(param_pairs(params))
            else:
                body = json.dumps(params, default=str)
        except (TypeError, ValueError) as exc:
            raise ValueError('webhook params must be a dict or a list of pairs (form) or JSON data: %s'
                             % (exc,)) from None
        order_key = call_uuid or 'delivery:' + key
        # nothing ahead of it for its call and a free slot: stored as in flight (attempt 1) and sent
        # at once, without a scheduler pass (the same state a pass would have committed)
        direct = (status == PENDING and not self._active[order_key] and self._running()
                  and len(self._in_flight) < self.concurrency)
        attempts = 1 if direct else 0
        try:
            delivery_id, _ = self._db.execute(
                'INSERT INTO outbox (call_uuid, order_key, event, url, method, encoding, body, '
                'idempotency_key, status, attempts, max_attempts, next_attempt_at, last_error, '
                'created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)',
                (call_uuid, order_key, event, target, method_text, encoding, body, key,
                 IN_FLIGHT if direct else status, attempts, 1 + self.retries, now, error, now, now))
        except sqlite3.Error as exc:
            log.error('call %s: could not store webhook %s for %s: %s', call_uuid or '-', event, url, exc)
            raise OutboxError('could not store webhook: %s' % (exc,)) from exc
        if status == FAILED:
            log.warning('call %s: webhook %s not sent: %s', call_uuid or '-', event or '', error)
            return delivery_id
        self._active[order_key] += 1
        self._active_total += 1
        if direct:
            row = {'id': delivery_id, 'call_uuid': call_uuid, 'order_key': order_key, 'event': event,
                   'url': target, 'method': method_text, 'encoding': encoding, 'body': body,
                   'idempotency_key': key, 'attempts': attempts, 'max_attempts': 1 + self.retries}
            self._in_flight.add(delivery_id)
            self._group.spawn(self._deliver, row)
        else:
            self._wake.set()
        return delivery_id

    def depth(self):
        """Webhooks not yet delivered or failed (pending + in_flight)."""
        return self._db.scalar("SELECT COUNT(*) FROM outbox WHERE status IN ('pending','in_flight')")

    def failed_count(self):
        return self._db.scalar("SELECT COUNT(*) FROM outbox WHERE status='failed'")

    def delivered_count(self):
        return self._db.scalar("SELECT COUNT(*) FROM outbox WHERE status='delivered'")

    def prune(self, delivered_older_than_s):
        """Delete delivered rows older than the given age; failed rows are kept. Returns the count."""
        cutoff = time.time() - float(delivered_older_than_s)
        _, count = self._db.execute("DELETE FROM outbox WHERE status='delivered' AND delivered_at < ?", (cutoff,))
        return count

    def retry_failed(self, call_uuid=None):
        """Give failed webhooks (all, or one call's) a fresh set of attempts, in their original
        order, with their original idempotency keys; returns how many. For after a receiver outage
        longer than the retry schedule: nothing is ever dropped, but nothing resends by itself."""
        now = time.time()
        where, args = "status='failed'", [now, now]
        if call_uuid is not None:
            where += " AND call_uuid=?"
            args.append(str(call_uuid))
        _, count = self._db.execute(
            "UPDATE outbox SET status='pending', attempts=0, next_attempt_at=?, updated_at=? WHERE " + where,
            args)
        if count:
            self._load_active()
            self._wake.set()
        return count

    def deliveries(self, call_uuid):
        """Every webhook of a call in enqueue order, as dicts (event, url, status, attempts, ...)."""
        rows = self._db.query('SELECT * FROM outbox WHERE call_uuid=? ORDER BY id', (str(call_uuid),))
        return [{k: row[k] for k in _PUBLIC_FIELDS} for row in rows]

    def get_delivery(self, delivery_id):
        row = self._db.query_one('SELECT * FROM outbox WHERE id=?', (delivery_id,))
        return {k: row[k] for k in _PUBLIC_FIELDS} if row else None

    # ---------------------------------------------------------------- worker lifecycle

    def start(self):
        """Reset rows left in_flight by a previous process (their outcome is unknown: the attempt is
        not counted) and start delivering everything pending. Idempotent."""
        if self._scheduler is not None and not self._scheduler.dead:
            return
        self._stopping = False
        self._requeue_in_flight()
        self._scan_due = True   # rows of a previous run may fall due later: read their times
        self._load_active()
        self._scheduler = gevent.spawn(self._run)
        self._wake.set()

    def stop(self, timeout=5.0):
        """Stop the worker: let sends in progress finish for up to `timeout` s, then abandon them (they
        are pending again, to be retried on the next start)."""
        self._stopping = True
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.kill(block=True, timeout=timeout)
            self._scheduler = None
        self._group.join(timeout=timeout)
        abandoned = list(self._in_flight)
        self._group.kill(block=True, timeout=timeout)
        self._in_flight.clear()
        if abandoned:
            self._requeue_in_flight(abandoned)

    def close(self):
        self.stop()
        self._pool.clear()
        self._db.close()

    def flush(self, timeout):
        """Wait until nothing is pending or in flight; True if so within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            if self.depth() == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.wait(min(remaining, 0.5))

    def wait_progress(self, timeout):
        """Wait until some delivery attempt finishes (or `timeout` s); True if one did."""
        self._changed.clear()
        return self._changed.wait(timeout)

    def _running(self):
        return self._scheduler is not None and not self._scheduler.dead and not self._stopping

    def _load_active(self):
        """Count each call's undelivered rows (what `enqueue` checks before sending directly)."""
        self._active = collections.Counter({
            r['order_key']: r['n'] for r in self._db.query(
                "SELECT order_key, COUNT(*) AS n FROM outbox WHERE status IN ('pending','in_flight') "
                "GROUP BY order_key")})
        self._active_total = sum(self._active.values())

    def _settled(self, row):
        """The row is delivered or failed: its call's next row may go directly."""
        key = row.get('order_key') or row['call_uuid'] or 'delivery:' + row['idempotency_key']
        if self._active[key] > 0:
            self._active[key] -= 1
            self._active_total -= 1
            if not self._active[key]:
                del self._active[key]

    def _requeue_in_flight(self, ids=None):
        now = time.time()
        sql = ("UPDATE outbox SET status='pending', attempts=MAX(attempts-1, 0), next_attempt_at=?, "
               "updated_at=? WHERE status='in_flight'")
        args = [now, now]
        if ids is not None:
            sql += ' AND id IN (%s)' % ','.join('?' * len(ids))
            args.extend(ids)
        _, count = self._db.execute(sql, args)
        if count:
            log.info('outbox: %d interrupted deliveries are pending again', count)

    # ---------------------------------------------------------------- the scheduler

    def _run(self):
        while not self._stopping:
            self._wake.clear()
            try:
                wait_s = self._dispatch_due()
            except Exception:  # a database problem must not end delivery for good
                log.exception('outbox: scheduling failed; retrying in 1 s')
                wait_s = 1.0
            self._wake.wait(timeout=wait_s)

    def _dispatch_due(self):
        """Start every due head-of-line delivery a free slot allows; return seconds until the next is due.

        When the next row falls due is kept in memory (`_due`: every retry's time; enqueued rows are
        due at once and wake the scheduler themselves), so a pass costs one read of the due heads and,
        if it starts any, one UPDATE marking them in flight. Only rows stored before start() with a
        due time still ahead are looked up (SELECT MIN), pass by pass, until none is left.
        """
        if self._orphans:
            orphans = list(self._orphans)
            self._requeue_in_flight(orphans)
            self._orphans.difference_update(orphans)
        now = time.time()
        while self._due and self._due[0] <= now:
            heapq.heappop(self._due)
        free = self.concurrency - len(self._in_flight)
        rows = []
        if free > 0:
            rows = self._db.query(
                "SELECT o.* FROM outbox o JOIN (SELECT MIN(id) AS head FROM outbox "
                "WHERE status IN ('pending','in_flight') GROUP BY order_key) h ON o.id = h.head "
                "WHERE o.status='pending' AND o.next_attempt_at <= ? ORDER BY o.next_attempt_at, o.id LIMIT ?",
                (now, free))
            if rows:
                ids = [row['id'] for row in rows]
                self._db.execute("UPDATE outbox SET status='in_flight', attempts=attempts+1, updated_at=? "
                                 "WHERE id IN (%s)" % ','.join('?' * len(ids)), [now] + ids)
            for row in rows:
                row['attempts'] += 1
                self._in_flight.add(row['id'])
                self._group.spawn(self._deliver, row)
        if self._scan_due:
            later = self._db.scalar("SELECT MIN(next_attempt_at) FROM outbox WHERE status='pending' "
                                    "AND next_attempt_at > ?", (now,))
            if later is None:
                self._scan_due = False
            elif not self._due or later < self._due[0]:
                heapq.heappush(self._due, later)
        if free <= 0 or len(rows) == free or not self._due:
            return IDLE_RECHECK_S  # a finishing delivery or an enqueue wakes us
        return max(0.0, min(IDLE_RECHECK_S, self._due[0] - time.time()))

    # ---------------------------------------------------------------- one delivery attempt

    def _deliver(self, row):
        try:
            status_code, error, retryable, retry_after = self._send(row)
        except Exception as exc:  # bad stored data must not kill the worker
            log.exception('call %s: webhook %s could not be sent', row['call_uuid'] or '-', row['id'])
            status_code, error, retryable, retry_after = None, 'internal error: %s' % (exc,), False, None
        try:
            self._record_outcome(row, status_code, error, retryable, retry_after)
        except Exception:
            log.exception('call %s: could not record the outcome of webhook %s; it will be retried',
                          row['call_uuid'] or '-', row['id'])
            self._orphans.add(row['id'])
        finally:
            self._in_flight.discard(row['id'])
            # the scheduler has work only if rows wait (behind this one, for a slot, or to retry)
            if self._active_total > len(self._in_flight) or self._orphans or self._due:
                self._wake.set()
            self._changed.set()

    def _send(self, row):
        """One HTTP attempt: (status_code, error, retryable, retry_after_s)."""
        params = json.loads(row['body'])
        request_url, body, content_type, sign_params = build_request(row['url'], row['method'], params,
                                                                     row['encoding'])
        headers = {'User-Agent': self.user_agent, 'Accept': '*/*', 'Accept-Encoding': ACCEPT_ENCODING,
                   'X-Callfork-Idempotency-Key': row['idempotency_key']}
        if row['event']:
            headers['X-Callfork-Event'] = _header_safe(row['event'])
        if content_type:
            headers['Content-Type'] = content_type
        headers.update(sign_headers(row['url'], sign_params, self.auth_token, method=row['method'],
                                    v3_mode=self.v3_mode))
        total = self.timeouts[0] + self.timeouts[1] + 1
        try:
            with gevent.Timeout(total):
                response = send(self._pool, row['method'], request_url, body, headers, self.timeouts)
        except gevent.Timeout:
            return None, 'no answer within %.1f s' % total, True, None
        except RequestFailed as exc:
            # refused, reset, DNS, TLS, timeouts are worth retrying; an invalid URL/header is not
            return None, exc.reason, exc.retryable, None
        code = response.status
        consumed = False
        try:
            with gevent.Timeout(self.timeouts[1], False):
                consumed = drain(response, RESPONSE_DRAIN_BYTES)
        finally:
            release(response, consumed)
        if 200 <= code < 300:
            return code, None, True, None
        retryable = code >= 500 or code in RETRYABLE_STATUS
        error = 'HTTP %d' % code
        if 300 <= code < 400:
            error += ' (redirect to %s not followed)' % response.headers.get('Location', '?')
        return code, error, retryable, _retry_after(response.headers.get('Retry-After'))

    def _record_outcome(self, row, status_code, error, retryable, retry_after):
        now = time.time()
        label = 'call %s: webhook %s #%d to %s' % (row['call_uuid'] or '-', row['event'] or '', row['id'],
                                                   row['url'])
        if error is None:
            self._db.execute("UPDATE outbox SET status='delivered', last_status_code=?, last_error=NULL, "
                             "delivered_at=?, updated_at=? WHERE id=?", (status_code, now, now, row['id']))
            self._settled(row)
            return
        if retryable and row['attempts'] < row['max_attempts'] and not self._stopping:
            delay = self._backoff(row['attempts'], retry_after)
            self._db.execute("UPDATE outbox SET status='pending', last_status_code=?, last_error=?, "
                             "next_attempt_at=?, updated_at=? WHERE id=?",
                             (status_code, error, now + delay, now, row['id']))
            heapq.heappush(self._due, now + delay)
            log.debug('%s: attempt %d/%d failed (%s); retry in %.2f s', label, row['attempts'],
                      row['max_attempts'], error, delay)
            return
        if retryable and self._stopping:
            self._db.execute("UPDATE outbox SET status='pending', last_status_code=?, last_error=?, "
                             "next_attempt_at=?, updated_at=? WHERE id=?",
                             (status_code, error, now, now, row['id']))
            return
        self._db.execute("UPDATE outbox SET status='failed', last_status_code=?, last_error=?, updated_at=? "
                         "WHERE id=?", (status_code, error, now, row['id']))
        self._settled(row)
        log.warning('%s failed after %d attempt(s): %s', label, row['attempts'], error)

    def _backoff(self, attempts, retry_after):
        cap = min(self.backoff_max_s, self.backoff_base_s * (2 ** max(0, attempts - 1)))
        delay = random.uniform(0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s))
        return delay


def _header_safe(value):
    """A header value http.client accepts: printable ASCII, no CR/LF, no surrounding spaces."""
    text = ''.join(ch if 32 <= ord(ch) < 127 else '?' for ch in str(value))
    return text.strip() or '?'


def _retry_after(value):
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None  # the HTTP-date form is not worth honouring here
