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
state in hosts.py, backoff and retry windows in retry_timing.py, what the database refused in
refused_writes.py, the running counts in outbox_counts.py, a new row in outbox_row.py, what it does
as PgOutbox does (argument checks, set-up, the memory queue, listing and retry, one attempt, /metrics
figures) in outbox_common.py; this module decides which row goes when and what an attempt's outcome
does to it. It stays one module on purpose: enqueue, the scheduler and outcome recording each commit
a row and, in the same step on the hub, change the in-flight set, the counts, the host state and the
wake-up events; split apart, they would reach into one another's state.
"""
import logging
import sqlite3
import time

import gevent

from records import write_refused

from .outbox_common import EXPIRE_BATCH, OutboxCommon, OutboxError, check_arguments
from .outbox_counts import OutboxCounts
from .outbox_table import IN_FLIGHT, PENDING, OutboxTable
from .refused_writes import REFUSED_RETRY_S
from .retry_timing import WindowClock

log = logging.getLogger(__name__)

IDLE_RECHECK_S = 5.0

__all__ = ['Outbox', 'OutboxError']


class Outbox(OutboxCommon):
    """Durable, ordered, retrying webhook delivery. See the module docstring; retries,
    retry_window_s and the backoff are RetryPolicy's (retry_timing.py); what it shares with PgOutbox
    is OutboxCommon's (outbox_common.py)."""

    _REFUSING = 'the database refuses writes'
    _KEEPING_UNTIL = ' until it takes them'

    def __init__(self, db_path, *, auth_token, retries=None, retry_window_s=21600.0, backoff_base_s=2.0,
                 backoff_max_s=300.0, connect_timeout_s=3, read_timeout_s=10, concurrency=16,
                 per_host_concurrency=8, retention_s=None, memory_limit=10000, user_agent=None,
                 v3_mode='docs', allow_private=True, synchronous='NORMAL', max_db_bytes=None):
        check_arguments('Outbox', auth_token, concurrency, per_host_concurrency)
        self._init_policy(retries=retries, retry_window_s=retry_window_s, backoff_base_s=backoff_base_s,
                          backoff_max_s=backoff_max_s, concurrency=concurrency, retention_s=retention_s,
                          allow_private=allow_private)
        self._table = OutboxTable(db_path, synchronous=synchronous, max_bytes=max_db_bytes)
        self._init_delivery(auth_token=auth_token, connect_timeout_s=connect_timeout_s,
                            read_timeout_s=read_timeout_s, per_host_concurrency=per_host_concurrency,
                            user_agent=user_agent, v3_mode=v3_mode, memory_limit=memory_limit)
        self._in_flight = set()                # ids this instance is sending (owned by this hub)
        self._windows = WindowClock(self.policy.retry_window_s)
        self._counts = OutboxCounts(self._table.counts())

    # ---------------------------------------------------------------- enqueue and inspection

    def enqueue(self, call_uuid, url, method, params, *, encoding='form', event=None, signer='vobiz'):
        """Keep one webhook and return its delivery id. The row is committed before this returns;
        while the database refuses writes it is kept in memory instead (returns None) and stored
        when it can be. A bad URL or method is stored as `failed` (with the reason), never dropped.
        OutboxError: it could be neither stored nor kept."""
        row = self._new_row(call_uuid, url, method, params, encoding, event, signer)
        now = row['created_at']
        if self._refused_writes.webhooks:    # the database refused an earlier one: this one queues behind it
            return self._keep_unsaved(row)
        # heading its call with a free slot: stored in flight (attempt 1) and sent at once
        send_now = self._send_now(row, now)
        try:
            delivery_id, stored, head = self._table.insert(row, now, send_now)
        except sqlite3.Error as exc:
            if not write_refused(exc):
                log.error('call %s: could not store webhook %s for %s: %s', row['call_uuid'] or '-', event, url, exc)
                raise OutboxError('could not store webhook: %s' % (exc,)) from exc
            self._refused_writes.refused(exc)
            return self._keep_unsaved(row)
        self._refused_writes.taken()
        self._stored(row, delivery_id, stored, head, now)
        return delivery_id

    def _stored(self, row, delivery_id, stored, head, now):
        row['id'] = delivery_id
        self._counts.stored(stored, row['host'])
        if stored == IN_FLIGHT:
            row.update(attempts=1, window_start=now)
            self._start(row)
        elif stored == PENDING and head:
            self._hosts.due(row['host'], now)
            self._windows.started(now)
            self._wake.set()

    def _waiting_count(self):
        return self._counts.waiting

    def _oldest_waiting(self):
        return self._table.oldest_waiting_created()

    def _failed_by_host(self):
        return self._counts.failed_by_host

    def failed_count(self):
        return self._counts.failed_total()

    def held_count(self):
        return self._counts.held

    def _reload(self):
        """Rows were queued anew: read the counts, the hosts' due times and the first window."""
        self._counts.reset(self._table.counts())
        for host, due in self._table.host_dues().items():
            self._hosts.set_due(host, due)
        self._windows.reset(self._table.first_window_start())
        self._wake.set()

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
            self._refused_writes.refused(exc)
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
        abandoned = self._stop_deliveries(timeout)
        try:
            self._record_unrecorded()
            if abandoned:
                self._table.requeue_in_flight(time.time(), abandoned)
            self._store_unsaved()
        except sqlite3.Error as exc:   # what is in flight in the table is requeued by the next start
            log.error('outbox: could not record the state at stop: %s', exc)
        if self._refused_writes.webhooks:
            log.error('outbox: %d webhook(s) the database refused are lost at stop (%s)',
                      len(self._refused_writes.webhooks), self.write_error)

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

    # ---------------------------------------------------------------- the scheduler

    def _run(self):
        while not self._stopping:
            self._wake.clear()
            try:
                wait_s = self._pass()
            except sqlite3.Error as exc:
                if write_refused(exc):
                    self._refused_writes.refused(exc)
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
        if self._refused_writes.waiting() and now >= self._refused_writes.retry_at:
            self._record_unrecorded()
            self._store_unsaved()
        self._dispatch(now)
        if self._windows.ended(now):
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
                self._refused_writes.taken()
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
        if self._windows.at is not None:
            times.append(self._windows.at)
        if self.retention_s is not None:
            times.append(self._prune_at)
        if self._refused_writes.waiting():
            times.append(self._refused_writes.retry_at)
        return max(0.0, min(times) - now)

    def _expire(self, now):
        """Pending heads whose window ended without a delivery (their host down, or a retry not yet
        due) fail, and hold their calls' later webhooks."""
        window_s = self.policy.retry_window_s
        for row in self._table.expired_heads(now - window_s, EXPIRE_BATCH):
            reason = self._window_ended(row)
            _, held = self._table.mark_failed(row, row['last_status_code'], reason, now, holds=True)
            self._counts.failed(row['host'], held)
            log.warning('call %s: webhook %s #%d to %s failed: %s', row['call_uuid'] or '-', row['event'] or '',
                        row['id'], row['url'], reason)
        self._windows.reset(self._table.first_window_start())

    def _store_unsaved(self):
        """Webhooks kept in memory go into the table, in order, in one transaction."""
        kept = self._refused_writes.webhooks
        if not kept:
            return
        rows = list(kept)
        now = time.time()
        try:
            results = self._table.insert_many(rows, now)
        except sqlite3.Error as exc:
            if not write_refused(exc):
                raise
            self._refused_writes.refused(exc)
            return
        for _ in rows:
            kept.popleft()
        for row, (delivery_id, stored, head) in zip(rows, results):
            self._stored(row, delivery_id, stored, head, now)
        self._refused_writes.taken()
        log.warning('outbox: the database takes writes again; %d webhook(s) kept in memory are stored', len(rows))

    # ---------------------------------------------------------------- one delivery attempt

    def _start(self, row):
        self._in_flight.add(row['id'])
        self._hosts.started(row['host'])
        self._group.spawn(self._deliver, row)

    def _deliver(self, row):
        outcome, now = self._attempt(row)
        try:
            self._record_outcome(row, outcome, now)
        except Exception as exc:
            if isinstance(exc, sqlite3.Error) and write_refused(exc):
                self._refused_writes.refused(exc, now)
            else:
                log.exception('call %s: could not record the outcome of webhook %s; trying again',
                              row['call_uuid'] or '-', row['id'])
                self._refused_writes.retry_after_pause(now)
            self._refused_writes.outcomes.append((row, outcome, now))
        finally:
            self._in_flight.discard(row['id'])
            self._wake.set()
            self._changed.set()

    def _record_outcome(self, row, outcome, now):
        status_code, error, retryable, retry_after = outcome
        label = 'call %s: webhook %s #%d to %s' % (row['call_uuid'] or '-', row['event'] or '', row['id'],
                                                   row['url'])
        if error is None:
            self._promoted(self._table.mark_delivered(row, status_code, now), now)
            self._counts.delivered()
            self.delivered += 1
        elif retryable and self._stopping:
            self._table.mark_pending(row['id'], status_code, error, now, now)
        elif retryable:
            at = self.policy.next_attempt(row, now, retry_after)
            if at is not None:
                self._table.mark_pending(row['id'], status_code, error, at, now)
                self._hosts.due(row['host'], at)
                log.debug('%s: attempt %d failed (%s); retry in %.2f s', label, row['attempts'], error, at - now)
            else:
                reason = 'gave up after %d attempt(s): %s' % (row['attempts'], error)
                _, held = self._table.mark_failed(row, status_code, reason, now, holds=True)
                self._counts.failed(row['host'], held)
                log.warning('%s failed: %s; later webhooks of the call are held behind it', label, reason)
        else:
            promoted, _ = self._table.mark_failed(row, status_code, error, now, holds=False)
            self._counts.failed(row['host'], 0)
            self._promoted(promoted, now)
            log.warning('%s failed after %d attempt(s): %s', label, row['attempts'], error)
        self._refused_writes.taken()

    def _promoted(self, nxt, now):
        """The call's next webhook just became its head: due as stored, its window from now."""
        if nxt is not None:
            self._hosts.due(nxt['host'], nxt['next_attempt_at'])
            self._windows.started(now)
