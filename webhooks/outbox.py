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

The rows and the SQL on them are in outbox_table.py, one HTTP attempt in delivery.py; this module
decides which row goes when and what an attempt's outcome does to it.
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

from .delivery import Sender
from .outbox_table import FAILED, IN_FLIGHT, PENDING, OutboxTable
from .signing import param_pairs
from .urls import UrlError, clean_url

log = logging.getLogger(__name__)

IDLE_RECHECK_S = 5.0


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
        self.retries = max(0, int(retries))
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.concurrency = int(concurrency)
        self.allow_private = allow_private
        self._table = OutboxTable(db_path, synchronous=synchronous)
        self._sender = Sender(auth_token=auth_token, connect_timeout_s=connect_timeout_s,
                              read_timeout_s=read_timeout_s, concurrency=self.concurrency,
                              user_agent=user_agent, v3_mode=v3_mode, allow_private=allow_private)
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
            delivery_id = self._table.insert(
                call_uuid=call_uuid, order_key=order_key, event=event, url=target, method=method_text,
                encoding=encoding, body=body, key=key, status=IN_FLIGHT if direct else status,
                attempts=attempts, max_attempts=1 + self.retries, now=now, error=error)
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
        return self._table.depth()

    def failed_count(self):
        return self._table.failed_count()

    def delivered_count(self):
        return self._table.delivered_count()

    def prune(self, delivered_older_than_s):
        """Delete delivered rows older than the given age; failed rows are kept. Returns the count."""
        return self._table.prune(time.time() - float(delivered_older_than_s))

    def retry_failed(self, call_uuid=None):
        """Give failed webhooks (all, or one call's) a fresh set of attempts, in their original
        order, with their original idempotency keys; returns how many. For after a receiver outage
        longer than the retry schedule: nothing is ever dropped, but nothing resends by itself."""
        count = self._table.retry_failed(time.time(), call_uuid)
        if count:
            self._load_active()
            self._wake.set()
        return count

    def deliveries(self, call_uuid):
        """Every webhook of a call in enqueue order, as dicts (event, url, status, attempts, ...)."""
        return self._table.deliveries(call_uuid)

    def get_delivery(self, delivery_id):
        return self._table.get(delivery_id)

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
        self._sender.close()
        self._table.close()

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
        self._active = self._table.active_counts()
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
        count = self._table.requeue_in_flight(time.time(), ids)
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
            rows = self._table.take_due_heads(now, free)
            for row in rows:
                self._in_flight.add(row['id'])
                self._group.spawn(self._deliver, row)
        if self._scan_due:
            later = self._table.next_due_after(now)
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
            status_code, error, retryable, retry_after = self._sender.send(row)
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

    def _record_outcome(self, row, status_code, error, retryable, retry_after):
        now = time.time()
        label = 'call %s: webhook %s #%d to %s' % (row['call_uuid'] or '-', row['event'] or '', row['id'],
                                                   row['url'])
        if error is None:
            self._table.mark_delivered(row['id'], status_code, now)
            self._settled(row)
            return
        if retryable and row['attempts'] < row['max_attempts'] and not self._stopping:
            delay = self._backoff(row['attempts'], retry_after)
            self._table.mark_pending(row['id'], status_code, error, now + delay, now)
            heapq.heappush(self._due, now + delay)
            log.debug('%s: attempt %d/%d failed (%s); retry in %.2f s', label, row['attempts'],
                      row['max_attempts'], error, delay)
            return
        if retryable and self._stopping:
            self._table.mark_pending(row['id'], status_code, error, now, now)
            return
        self._table.mark_failed(row['id'], status_code, error, now)
        self._settled(row)
        log.warning('%s failed after %d attempt(s): %s', label, row['attempts'], error)

    def _backoff(self, attempts, retry_after):
        cap = min(self.backoff_max_s, self.backoff_base_s * (2 ** max(0, attempts - 1)))
        delay = random.uniform(0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s))
        return delay

