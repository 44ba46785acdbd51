"""The durable webhook outbox: status callbacks are committed to SQLite (WAL) before `enqueue` returns,
then delivered by a worker greenlet with retries, capped exponential backoff with full jitter,
per-call ordering and an idempotency key (the same on every attempt), and survive a crash
(`kill -9`) of the process.

How long a webhook is retried: for `retry_window_s` from the moment it could first be sent (it
became the first undelivered webhook of its call), or, with `retries` (Vobiz's behaviour), for that
many retries after the first attempt; either ends in `failed`, with the reason. Connection errors,
timeouts, 5xx, 408 and 429 are retried; other answers (4xx, 3xx: redirects are not followed,
signatures are for the configured URL) fail at once. A Retry-After (seconds or HTTP-date) delays
the next attempt, up to RETRY_AFTER_MAX_S.

Ordering: webhooks that share a call UUID go out strictly in enqueue order: the next one waits until
the earlier one is delivered or failed. One that failed without its receiver ever accepting it (it
ran out of retries) holds the call's later ones (`held`), so none overtakes it; `retry_failed` sends
it and them again in order, `release_held` gives up on it and sends them. One its receiver answered
with a refusal (4xx, 3xx), or that could never be sent (a bad URL or method, stored `failed` at
once), holds nothing: the receiver has seen it, or no receiver ever could.

Bounds: at most `concurrency` deliveries at once, at most `per_host_concurrency` to one receiver
host, and none to a host that is down until its pause has passed (hosts.py), so a dead receiver
takes neither every slot nor a stream of attempts. What waits is rows in SQLite; memory holds only
what is in flight, the per-host state and, while the database refuses writes (full disk, I/O error,
read-only file: records.write_refused), the webhooks it refused, in order, up to `memory_limit`
(past it `enqueue` raises OutboxError and counts the loss); they are stored, then delivered, once
it takes writes again. Delivered rows older than `retention_s` are deleted.

Cost per webhook (BENCHMARKS.md, C4): a webhook that heads its call, with a free slot, is stored
already `in_flight` (attempt 1) and sent straight from `enqueue`; otherwise the scheduler takes it
from the table's index of due call heads. The common case is two commits per webhook (the row, its
outcome) and no polling. One Outbox (one process) owns a database file's outbox table at a time;
use it from the gevent hub's thread (its wake-up events are gevent events).

The rows and the SQL on them are in outbox_table.py, one HTTP attempt in delivery.py, the per-host
state in hosts.py; this module decides which row goes when and what an attempt's outcome does to it.
"""
import collections
import json
import logging
import random
import sqlite3
import time
import uuid as uuid_module

import gevent
import gevent.event
import gevent.pool

from records import write_refused

from .delivery import Sender
from .hosts import Hosts
from .outbox_table import DELIVERED, FAILED, HELD, IN_FLIGHT, PENDING, WAITING, OutboxTable, host_of
from .signing import param_pairs
from .urls import UrlError, clean_url

log = logging.getLogger(__name__)

IDLE_RECHECK_S = 5.0
RETRY_AFTER_MAX_S = 3600.0   # a receiver asking for more is asked again after an hour
REFUSED_RETRY_S = 1.0        # how often writes the database refused are tried again
PRUNE_EVERY_S = 60.0
PRUNE_BATCH = 2000           # rows deleted per statement (each statement holds the hub)
EXPIRE_BATCH = 500
UNSAVED = 'unsaved'          # the status listings give a webhook kept in memory (not stored yet)


class OutboxError(Exception):
    """The outbox could not keep a webhook (the caller must know: nothing was queued)."""


class Outbox:
    """Durable, ordered, retrying webhook delivery. See the module docstring.

    retry_window_s: retry for this long after the webhook could first be sent (None: no window).
    retries: give up after this many retries (attempts = 1 + retries; None: no count). At least one
    of the two. Backoff before attempt n+1 is uniform(0, min(backoff_max_s, backoff_base_s * 2**(n-1)))
    (full jitter), raised to a Retry-After header when there is one (up to RETRY_AFTER_MAX_S).
    """

    def __init__(self, db_path, *, auth_token, retries=None, retry_window_s=21600.0, backoff_base_s=2.0,
                 backoff_max_s=300.0, connect_timeout_s=3, read_timeout_s=10, concurrency=16,
                 per_host_concurrency=8, retention_s=None, memory_limit=10000, user_agent=None,
                 v3_mode='docs', allow_private=True, synchronous='NORMAL', max_db_bytes=None):
        if not auth_token:
            raise ValueError('Outbox needs an auth token to sign webhooks')
        if concurrency < 1 or per_host_concurrency < 1:
            raise ValueError('concurrency and per_host_concurrency must be >= 1')
        if retries is None and retry_window_s is None:
            raise ValueError('give retries, retry_window_s or both')
        self.retries = None if retries is None else max(0, int(retries))
        self.retry_window_s = None if retry_window_s is None else float(retry_window_s)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.concurrency = int(concurrency)
        self.retention_s = None if retention_s is None else float(retention_s)
        self.memory_limit = max(0, int(memory_limit))
        self.allow_private = allow_private
        self._table = OutboxTable(db_path, synchronous=synchronous, max_bytes=max_db_bytes)
        self._sender = Sender(auth_token=auth_token, connect_timeout_s=connect_timeout_s,
                              read_timeout_s=read_timeout_s, concurrency=self.concurrency,
                              user_agent=user_agent, v3_mode=v3_mode, allow_private=allow_private)
        self._hosts = Hosts(per_host_concurrency, self.backoff_base_s, self.backoff_max_s, RETRY_AFTER_MAX_S)
        self._group = gevent.pool.Group()       # the delivery greenlets (capacity: self._in_flight)
        self._wake = gevent.event.Event()      # set: the scheduler should look again now
        self._changed = gevent.event.Event()   # set: some delivery finished (flush waits on it)
        self._scheduler = None
        self._in_flight = set()                # ids this instance is sending (owned by this hub)
        self._unrecorded = []                  # (row, outcome, time) the database refused to record
        self._unsaved = collections.deque()    # webhooks the database refused to store, in order
        self._retry_refused_at = 0.0
        self._prepared = False                 # start()'s table preparation done
        self._expiry_at = None                 # when the first pending head's window ends (None: none)
        self._prune_at = 0.0
        self._stopping = False
        self.lost = 0                          # webhooks dropped: refused by the database, memory full
        self.delivered = 0                     # webhooks delivered since start
        self.write_error = None                # why the database refuses writes (None: it takes them)
        # counted once, then kept by every change (a count over a dead receiver's rows holds the hub)
        self._waiting, self._held, self._failed_by_host = self._table.counts()

    # ---------------------------------------------------------------- enqueue and inspection

    def enqueue(self, call_uuid, url, method, params, *, encoding='form', event=None):
        """Keep one webhook and return its delivery id. The row is committed before this returns;
        while the database refuses writes it is kept in memory instead (returns None) and stored
        when it can be. A bad URL or method is stored as `failed` (with the reason), never dropped.
        OutboxError: it could be neither stored nor kept."""
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
        row = {'call_uuid': call_uuid, 'order_key': call_uuid or 'delivery:' + key, 'event': event,
               'url': target, 'host': host_of(target), 'method': method_text, 'encoding': encoding,
               'body': body, 'key': key, 'idempotency_key': key, 'status': status, 'error': error,
               'max_attempts': 0 if self.retries is None else 1 + self.retries, 'created_at': now}
        if status == FAILED:
            log.warning('call %s: webhook %s not sent: %s', call_uuid or '-', event or '', error)
        if self._unsaved:        # the database refused an earlier one: this one queues behind it
            return self._keep_unsaved(row)
        # heading its call with a free slot: stored in flight (attempt 1) and sent at once
        send_now = (status == PENDING and self._running() and len(self._in_flight) < self.concurrency
                    and self._hosts.capacity(row['host'], now) > 0)
        try:
            delivery_id, stored, head = self._table.insert(row, now, send_now)
        except sqlite3.Error as exc:
            if not write_refused(exc):
                log.error('call %s: could not store webhook %s for %s: %s', call_uuid or '-', event, url, exc)
                raise OutboxError('could not store webhook: %s' % (exc,)) from exc
            self._refused(exc)
            return self._keep_unsaved(row)
        self.write_error = None
        self._stored(row, delivery_id, stored, head, now)
        return delivery_id

    def _stored(self, row, delivery_id, stored, head, now):
        row['id'] = delivery_id
        if stored == HELD:
            self._held += 1
        elif stored == FAILED:
            self._count_failed(row['host'], 1)
        else:
            self._waiting += 1
        if stored == IN_FLIGHT:
            row.update(attempts=1, window_start=now)
            self._start(row)
        elif stored == PENDING and head:
            self._hosts.due(row['host'], now)
            self._expires(now)
            self._wake.set()

    def _keep_unsaved(self, row):
        if len(self._unsaved) >= self.memory_limit:
            self.lost += 1
            log.error('call %s: webhook %s lost: the database refuses writes (%s) and %d webhooks wait in '
                      'memory already', row['call_uuid'] or '-', row['event'] or '', self.write_error,
                      len(self._unsaved))
            raise OutboxError('the database refuses writes (%s) and the memory queue is full' % (self.write_error,))
        if not self._unsaved:
            log.warning('outbox: the database refuses writes (%s): keeping webhooks in memory (up to %d) '
                        'until it takes them', self.write_error, self.memory_limit)
        self._unsaved.append(row)
        self._wake.set()
        return None

    def _refused(self, exc):
        self.write_error = str(exc)
        self._retry_refused_at = time.time() + REFUSED_RETRY_S

    def _count_failed(self, host, n):
        count = self._failed_by_host.get(host, 0) + n
        if count > 0:
            self._failed_by_host[host] = count
        else:
            self._failed_by_host.pop(host, None)

    def _recount(self):
        self._waiting, self._held, self._failed_by_host = self._table.counts()

    def depth(self):
        """Webhooks not yet delivered or failed (pending + in_flight + kept in memory)."""
        return self._waiting + len(self._unsaved)

    def failed_count(self):
        return sum(self._failed_by_host.values())

    def held_count(self):
        return self._held

    def delivered_count(self):
        """Delivered rows in the table (a count of them all: for tests and tools, not /metrics)."""
        return self._table.count(DELIVERED)

    def stats(self):
        """What /metrics and /healthz report: depth, held, failed, delivered (since start), unsaved
        (kept in memory), lost, oldest_pending_age_s (of what is not delivered or failed), failed_by_host,
        hosts_down {host: (failed rounds, s until the next try)}, writable, write_error."""
        now = time.time()
        oldest = self._table.oldest_waiting_created()
        if self._unsaved:
            first = self._unsaved[0]['created_at']
            oldest = first if oldest is None else min(oldest, first)
        return {'depth': self.depth(), 'held': self.held_count(), 'failed': self.failed_count(),
                'delivered': self.delivered, 'unsaved': len(self._unsaved), 'lost': self.lost,
                'oldest_pending_age_s': 0.0 if oldest is None else max(0.0, now - oldest),
                'failed_by_host': dict(self._failed_by_host), 'hosts_down': self._hosts.down(now),
                'writable': self.write_error is None, 'write_error': self.write_error}

    def prune(self, delivered_older_than_s):
        """Delete delivered rows older than the given age; others are kept. Returns the count."""
        return self._table.prune(time.time() - float(delivered_older_than_s))

    def retry_failed(self, call_uuid=None):
        """Give failed webhooks (all, or one call's) and those held behind them a fresh set of
        attempts, in their original order, with their original idempotency keys; returns how many
        failed ones."""
        count = self._table.retry_failed(time.time(), call_uuid)
        self._reload()
        return count

    def release_held(self, call_uuid=None):
        """Send the webhooks held behind failed ones (all, or one call's), in order; the failed ones
        stay failed. Returns how many were released."""
        count = self._table.release_held(time.time(), call_uuid)
        self._reload()
        return count

    def _reload(self):
        """Rows were queued anew: read the counts, the hosts' due times and the first window."""
        self._recount()
        for host, due in self._table.host_dues().items():
            self._hosts.set_due(host, due)
        first = self._table.first_window_start()
        self._expiry_at = None
        if first is not None:
            self._expires(first)
        self._wake.set()

    def deliveries(self, call_uuid):
        """Every webhook of a call in enqueue order, as dicts (event, url, status, attempts, ...);
        those kept in memory (the database refused them) last, with status 'unsaved' and no id."""
        rows = self._table.deliveries(call_uuid)
        return rows + [_unsaved_public(r) for r in list(self._unsaved) if r['call_uuid'] == str(call_uuid)]

    def webhooks(self, statuses=None, call_uuid=None, limit=100):
        """Webhooks with these statuses (None: every one not delivered, those kept in memory too:
        status 'unsaved'), all or one call's, oldest first, at most `limit`."""
        statuses = WAITING + (UNSAVED,) if statuses is None else tuple(statuses)
        stored = tuple(s for s in statuses if s != UNSAVED)
        rows = self._table.listing(stored, call_uuid, limit) if stored else []
        if UNSAVED in statuses:
            kept = [_unsaved_public(r) for r in list(self._unsaved)
                    if call_uuid is None or r['call_uuid'] == str(call_uuid)]
            rows += kept[:max(0, limit - len(rows))]
        return rows

    def get_delivery(self, delivery_id):
        return self._table.get(delivery_id)

    # ---------------------------------------------------------------- worker lifecycle

    def start(self):
        """Reset rows left in_flight by a previous process (their outcome is unknown: the attempt is
        not counted) and start delivering everything pending. Idempotent."""
        if self._scheduler is not None and not self._scheduler.dead:
            return
        self._stopping = False
        self._prepared = False
        try:
            self._prepare()
        except sqlite3.Error as exc:   # e.g. a full disk at start: the scheduler tries again
            if not write_refused(exc):
                raise
            self._refused(exc)
            log.error('outbox: the database refuses writes at start (%s); retrying', exc)
        self._scheduler = gevent.spawn(self._run)
        self._wake.set()

    def _prepare(self):
        now = time.time()
        count = self._table.requeue_in_flight(now)
        if count:
            log.info('outbox: %d interrupted deliveries are pending again', count)
        self._table.reset_heads(now)
        self._prepared = True
        self._reload()
        self._prune_at = now

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
        # killed deliveries did not say they finished: forget what was counted in flight per host
        self._hosts = Hosts(self._hosts.per_host, self.backoff_base_s, self.backoff_max_s, RETRY_AFTER_MAX_S)
        try:
            self._record_unrecorded()
            if abandoned:
                self._table.requeue_in_flight(time.time(), abandoned)
            self._store_unsaved()
        except sqlite3.Error as exc:   # what is in flight in the table is requeued by the next start
            log.error('outbox: could not record the state at stop: %s', exc)
        if self._unsaved:
            log.error('outbox: %d webhook(s) the database refused are lost at stop (%s)',
                      len(self._unsaved), self.write_error)

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

    # ---------------------------------------------------------------- the scheduler

    def _run(self):
        while not self._stopping:
            self._wake.clear()
            try:
                wait_s = self._pass()
            except sqlite3.Error as exc:
                if write_refused(exc):
                    self._refused(exc)
                else:  # a database problem must not end delivery for good
                    log.exception('outbox: scheduling failed; retrying in 1 s')
                wait_s = REFUSED_RETRY_S
            except Exception:
                log.exception('outbox: scheduling failed; retrying in 1 s')
                wait_s = 1.0
            self._wake.wait(timeout=wait_s)

    def _pass(self):
        """One look at everything: outcomes and webhooks the database refused, due deliveries, the
        retry windows that ended, old delivered rows. Returns seconds until the next look is due."""
        now = time.time()
        if not self._prepared:
            self._prepare()
        if self._unrecorded or self._unsaved:
            if now >= self._retry_refused_at:
                self._record_unrecorded()
                self._store_unsaved()
        self._dispatch(now)
        if self.retry_window_s is not None and self._expiry_at is not None and self._expiry_at <= now:
            self._expire(now)
        if self.retention_s is not None and now >= self._prune_at:
            self._prune(now)
        return self._wait_s(time.time())

    def _dispatch(self, now):
        """Start due call heads, host by host (the longest due first), as slots allow."""
        free = self.concurrency - len(self._in_flight)
        for host in self._hosts.ready(now):
            if free <= 0:
                break
            room = min(free, self._hosts.capacity(host, now))
            rows = self._table.take_due(host, now, room)
            if rows:
                self.write_error = None
            for row in rows:
                self._start(row)
            free -= len(rows)
            if len(rows) < room:      # nothing more due now: when is it?
                self._hosts.set_due(host, self._table.next_due(host))

    def _wait_s(self, now):
        times = [now + IDLE_RECHECK_S]
        if len(self._in_flight) < self.concurrency:   # else a finishing delivery wakes us
            wake = self._hosts.next_wake(now)
            if wake is not None:
                times.append(wake)
        if self._expiry_at is not None:
            times.append(self._expiry_at)
        if self.retention_s is not None:
            times.append(self._prune_at)
        if self._unrecorded or self._unsaved:
            times.append(self._retry_refused_at)
        return max(0.0, min(times) - now)

    def _expires(self, window_start):
        """A head's window started at `window_start`: wake up when it ends, if that is the first."""
        if self.retry_window_s is None:
            return
        end = window_start + self.retry_window_s
        if self._expiry_at is None or end < self._expiry_at:
            self._expiry_at = end

    def _expire(self, now):
        """Pending heads whose window ended without a delivery (their host down, or a retry not yet
        due) fail, and hold their calls' later webhooks."""
        for row in self._table.expired_heads(now - self.retry_window_s, EXPIRE_BATCH):
            reason = 'not delivered within the %g s retry window (%d attempt(s); last error: %s)' % (
                self.retry_window_s, row['attempts'], row['last_error'] or 'none: its receiver was down')
            _, held = self._table.mark_failed(row, row['last_status_code'], reason, now, holds=True)
            self._failed(row, held)
            log.warning('call %s: webhook %s #%d to %s failed: %s', row['call_uuid'] or '-', row['event'] or '',
                        row['id'], row['url'], reason)
        first = self._table.first_window_start()
        self._expiry_at = None
        if first is not None:
            self._expires(first)

    def _prune(self, now):
        count = self._table.prune(now - self.retention_s, PRUNE_BATCH)
        if count >= PRUNE_BATCH:
            self._prune_at = now + 0.05    # more to delete: soon, after other greenlets had a turn
        else:
            self._prune_at = now + min(PRUNE_EVERY_S, max(self.retention_s / 4, 0.5))

    def _store_unsaved(self):
        """Webhooks kept in memory go into the table, in order, in one transaction."""
        if not self._unsaved:
            return
        rows = list(self._unsaved)
        now = time.time()
        try:
            results = self._table.insert_many(rows, now)
        except sqlite3.Error as exc:
            if not write_refused(exc):
                raise
            self._refused(exc)
            return
        for _ in rows:
            self._unsaved.popleft()
        for row, (delivery_id, stored, head) in zip(rows, results):
            self._stored(row, delivery_id, stored, head, now)
        self.write_error = None
        log.warning('outbox: the database takes writes again; %d webhook(s) kept in memory are stored', len(rows))

    # ---------------------------------------------------------------- one delivery attempt

    def _start(self, row):
        self._in_flight.add(row['id'])
        self._hosts.started(row['host'])
        self._group.spawn(self._deliver, row)

    def _deliver(self, row):
        try:
            status_code, error, retryable, retry_after = self._sender.send(row)
        except Exception as exc:  # bad stored data must not kill the worker
            log.exception('call %s: webhook %s could not be sent', row['call_uuid'] or '-', row['id'])
            status_code, error, retryable, retry_after = None, 'internal error: %s' % (exc,), False, None
        now = time.time()
        self._hosts.finished(row['host'], error is not None and retryable, retry_after, now)
        outcome = (status_code, error, retryable, retry_after)
        try:
            self._record_outcome(row, outcome, now)
        except Exception as exc:
            if isinstance(exc, sqlite3.Error) and write_refused(exc):
                self._refused(exc)
            else:
                log.exception('call %s: could not record the outcome of webhook %s; trying again',
                              row['call_uuid'] or '-', row['id'])
                self._retry_refused_at = now + REFUSED_RETRY_S
            self._unrecorded.append((row, outcome, now))
        finally:
            self._in_flight.discard(row['id'])
            self._wake.set()
            self._changed.set()

    def _record_unrecorded(self):
        """Outcomes the database refused to record, recorded now, in the order they came."""
        while self._unrecorded:
            row, outcome, at = self._unrecorded[0]
            self._record_outcome(row, outcome, at)
            self._unrecorded.pop(0)

    def _record_outcome(self, row, outcome, now):
        status_code, error, retryable, retry_after = outcome
        label = 'call %s: webhook %s #%d to %s' % (row['call_uuid'] or '-', row['event'] or '', row['id'],
                                                   row['url'])
        if error is None:
            self._promoted(self._table.mark_delivered(row, status_code, now), now)
            self._waiting -= 1
            self.delivered += 1
        elif retryable and self._stopping:
            self._table.mark_pending(row['id'], status_code, error, now, now)
        elif retryable:
            at = self._next_attempt(row, now, retry_after)
            if at is not None:
                self._table.mark_pending(row['id'], status_code, error, at, now)
                self._hosts.due(row['host'], at)
                log.debug('%s: attempt %d failed (%s); retry in %.2f s', label, row['attempts'], error, at - now)
            else:
                reason = 'gave up after %d attempt(s): %s' % (row['attempts'], error)
                _, held = self._table.mark_failed(row, status_code, reason, now, holds=True)
                self._failed(row, held)
                log.warning('%s failed: %s; later webhooks of the call are held behind it', label, reason)
        else:
            promoted, _ = self._table.mark_failed(row, status_code, error, now, holds=False)
            self._failed(row, 0)
            self._promoted(promoted, now)
            log.warning('%s failed after %d attempt(s): %s', label, row['attempts'], error)
        self.write_error = None

    def _failed(self, row, held):
        """A waiting row failed, and `held` rows of its call moved from waiting to held."""
        self._waiting -= 1 + held
        self._held += held
        self._count_failed(row['host'], 1)

    def _promoted(self, nxt, now):
        """The call's next webhook just became its head: due as stored, its window from now."""
        if nxt is not None:
            self._hosts.due(nxt['host'], nxt['next_attempt_at'])
            self._expires(now)

    def _next_attempt(self, row, now, retry_after):
        """When to try a row again after a retryable failure, or None: it has run out of retries."""
        attempts = row['attempts']
        if self.retries is not None and attempts >= 1 + self.retries:
            return None
        cap = min(self.backoff_max_s, self.backoff_base_s * (2 ** min(max(0, attempts - 1), 30)))
        delay = random.uniform(0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_MAX_S))
        at = now + delay
        if self.retry_window_s is not None:
            end = (row.get('window_start') or now) + self.retry_window_s
            if now >= end:
                return None
            at = min(at, end)     # the last attempt at the window's end
        return at


def _unsaved_public(row):
    return {'id': None, 'call_uuid': row['call_uuid'], 'event': row['event'], 'url': row['url'], 'host': row['host'],
            'method': row['method'], 'encoding': row['encoding'], 'status': UNSAVED, 'attempts': 0,
            'last_status_code': None, 'last_error': 'kept in memory: the database refuses writes',
            'idempotency_key': row['key'], 'next_attempt_at': None, 'created_at': row['created_at'],
            'updated_at': row['created_at'], 'delivered_at': None}
