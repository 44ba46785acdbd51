"""One webhook delivery attempt over HTTP: `Sender` signs a stored outbox row (Vobiz signatures,
idempotency key, event header), sends it on a pool of at most `concurrency` connections, reads
a little of the answer so the connection can be reused, and classifies the outcome as
(status_code, error, retryable, retry_after_s): retryable for no answer (refused, reset, DNS, TLS,
timeouts), 5xx, 408 and 429; Retry-After read in both its forms (seconds, HTTP-date). What to do
with that outcome is the outbox's job.
"""
import functools
import datetime
import email.utils
import json
import time

import gevent

from .http_client import (ACCEPT_ENCODING, RequestFailed, build_request, default_user_agent, drain, new_pool,
                          release, send)
from .signing import sign_headers
from .twilio_signing import twilio_headers
from .urls import checked_addresses

RETRYABLE_STATUS = frozenset({408, 429})
RESPONSE_DRAIN_BYTES = 64 * 1024


class Sender:
    def __init__(self, *, auth_token, connect_timeout_s=3, read_timeout_s=10, concurrency=16, user_agent=None,
                 v3_mode='docs', allow_private=True):
        self.auth_token = auth_token
        self.timeouts = (connect_timeout_s, read_timeout_s)
        self.user_agent = user_agent or default_user_agent()
        self.v3_mode = v3_mode
        # never more than `concurrency` in flight; without allow_private, only checked public addresses are dialled
        resolve = None if allow_private else functools.partial(checked_addresses, allow_private=False)
        self._pool = new_pool(pool_size=concurrency, resolve=resolve)

    def send(self, row):
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
        if row.get('signer') == 'twilio':
            headers.update(twilio_headers(row['url'], sign_params, self.auth_token, method=row['method'],
                                          idempotency_key=row['idempotency_key']))
        else:
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

    def close(self):
        self._pool.clear()


def _header_safe(value):
    """A header value http.client accepts: printable ASCII, no CR/LF, no surrounding spaces."""
    text = ''.join(ch if 32 <= ord(ch) < 127 else '?' for ch in str(value))
    return text.strip() or '?'


def _retry_after(value, now=None):
    """Seconds from now that a Retry-After header asks for: delay-seconds, or an HTTP-date
    (RFC 9110 10.2.3); None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:   # an HTTP-date is GMT; parsedate_to_datetime leaves "-0000" naive
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
