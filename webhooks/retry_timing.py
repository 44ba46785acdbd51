"""When the outbox tries a webhook again, and when its retry window ends.

RetryPolicy: after a retryable failure of attempt n, the next attempt is uniform(0, min(backoff_max_s,
backoff_base_s * 2**(n-1))) seconds away (full jitter), raised to the receiver's Retry-After (up to
RETRY_AFTER_MAX_S), and never past the end of the webhook's retry window; None when it has run out of
retries or its window has ended.

WindowClock: the earliest end of a retry window among the calls' pending heads, so the scheduler
wakes when the first one ends instead of polling.
"""
import random

RETRY_AFTER_MAX_S = 3600.0   # a receiver asking for more is asked again after an hour


class RetryPolicy:
    """retry_window_s: retry for this long after the webhook could first be sent (None: no window).
    retries: give up after this many retries (attempts = 1 + retries; None: no count). At least one
    of the two."""

    def __init__(self, *, retries, retry_window_s, backoff_base_s, backoff_max_s):
        if retries is None and retry_window_s is None:
            raise ValueError('give retries, retry_window_s or both')
        self.retries = None if retries is None else max(0, int(retries))
        self.retry_window_s = None if retry_window_s is None else float(retry_window_s)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)

    @property
    def max_attempts(self):
        """Stored with each row: 0 when only the window limits it."""
        return 0 if self.retries is None else 1 + self.retries

    def next_attempt(self, row, now, retry_after):
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


class WindowClock:
    """The first moment a pending head's retry window ends (`at`; None: no window is running)."""

    def __init__(self, retry_window_s):
        self.retry_window_s = retry_window_s
        self.at = None

    def started(self, window_start):
        """A head's window started at `window_start`: remember its end if it is the first."""
        if self.retry_window_s is None:
            return
        end = window_start + self.retry_window_s
        if self.at is None or end < self.at:
            self.at = end

    def reset(self, first_window_start):
        """Start again from the earliest window still running (None: there is none)."""
        self.at = None
        if first_window_start is not None:
            self.started(first_window_start)

    def ended(self, now):
        return self.retry_window_s is not None and self.at is not None and self.at <= now
