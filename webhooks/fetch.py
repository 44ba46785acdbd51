"""Fetching the application's documents (answer, action, redirect, transfer URLs): a synchronous, signed
request with connect/read/total timeouts, a body-size limit, redirects re-checked, and a fallback URL.

Errors are `FetchError(kind, message, status=None)` with kind in FetchError.KINDS.
"""
import functools
import logging
from dataclasses import dataclass
from urllib.parse import urljoin

import gevent

from .http_client import (ACCEPT_ENCODING, BodyReadError, BodyTooLarge, RequestFailed, build_request,
                          default_user_agent, new_pool, read_limited, release, send)
from .signing import SIGNERS, sign_headers
from .twilio_signing import twilio_headers
from .urls import UrlError, checked_addresses, clean_url

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
# keep-alive connections kept per app host: one per fetch in flight, and every call in its setup has
# one in flight, so a small pool under a burst of calls (or a slow app) closes connections after use
# and the next calls pay a new TCP connect (BENCHMARKS.md, C3: 340 "pool is full" discards at 32)
FETCH_POOL_SIZE = 256
_pools = {}   # allow_private -> PoolManager (without: connections dial only checked public addresses)


def _get_pool(allow_private=True):
    pool = _pools.get(allow_private)
    if pool is None:
        resolve = None if allow_private else functools.partial(checked_addresses, allow_private=False)
        pool = _pools[allow_private] = new_pool(pool_size=FETCH_POOL_SIZE, resolve=resolve)
    return pool


@dataclass
class FetchResult:
    status: int
    content_type: str
    body: bytes
    url: str


class FetchError(Exception):
    """A document fetch that failed. kind: unreachable | http_status | too_large | bad_url."""

    KINDS = ('unreachable', 'http_status', 'too_large', 'bad_url')

    def __init__(self, kind, message, status=None, url=None):
        if kind not in self.KINDS:
            raise ValueError('unknown FetchError kind %r' % (kind,))
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.url = url

    def __str__(self):
        return '%s: %s' % (self.kind, self.message)


class _TotalTimeout(BaseException):
    """Raised by the total-deadline timer; a BaseException (like gevent.Timeout) so no library
    `except Exception` swallows it."""


def fetch_document(url, method, params, *, auth_token, connect_timeout=3, read_timeout=10,
                   total_timeout=None, max_bytes=100 * 1024, user_agent=None, v3_mode='docs',
                   allow_private=True, signer='vobiz'):
    """Request `url` with `params` (form-encoded POST, or GET with the params in the query), signed with
    `auth_token` as `signer` ('vobiz' or 'twilio') signs; return FetchResult for a 2xx answer, raise FetchError otherwise.

    total_timeout (default connect_timeout + read_timeout) bounds the whole exchange, including a
    server that trickles its body. Redirects (at most 5) are followed and each target is re-checked
    with clean_url; 301/302/303 turn into a GET without params. With allow_private=False the
    connection dials only the public addresses it checked (http_client: `resolve`).
    """
    method = (method or 'POST').upper()
    if method not in ('GET', 'POST'):
        raise FetchError('bad_url', 'method must be GET or POST, not %r' % (method,), url=url)
    if signer not in SIGNERS:
        raise ValueError('signer must be one of %s, not %r' % (', '.join(SIGNERS), signer))
    try:
        target = clean_url(url, allow_private=allow_private)
    except UrlError as exc:
        raise FetchError('bad_url', str(exc), url=url) from None
    total = total_timeout if total_timeout is not None else connect_timeout + read_timeout
    ua = user_agent or default_user_agent()
    timer = gevent.Timeout(total, _TotalTimeout)
    timer.start()
    try:
        return _fetch_following(target, method, params, auth_token, (connect_timeout, read_timeout),
                                max_bytes, ua, v3_mode, allow_private, signer)
    except _TotalTimeout:
        raise FetchError('unreachable', 'no complete answer from %s within %.1f s' % (target, total),
                         url=target) from None
    finally:
        timer.close()


def _fetch_following(url, method, params, auth_token, timeouts, max_bytes, ua, v3_mode, allow_private, signer):
    pool = _get_pool(allow_private)
    for _hop in range(MAX_REDIRECTS + 1):
        request_url, body, content_type, _ = build_request(url, method, params, 'form')
        headers = {'User-Agent': ua, 'Accept': '*/*', 'Accept-Encoding': ACCEPT_ENCODING}
        if content_type:
            headers['Content-Type'] = content_type
        if signer == 'twilio':
            headers.update(twilio_headers(url, params, auth_token, method=method))
        else:
            headers.update(sign_headers(url, params, auth_token, method=method, v3_mode=v3_mode))
        try:
            response = send(pool, method, request_url, body, headers, timeouts)
        except RequestFailed as exc:
            if exc.refused:   # the name resolved to a private address as we connected
                raise FetchError('bad_url', '%s: %s' % (request_url, exc), url=url) from None
            if exc.bad_url:
                raise FetchError('bad_url', 'invalid URL %s: %s' % (request_url, exc), url=url) from None
            raise FetchError('unreachable', '%s: %s' % (request_url, exc), url=url) from None
        consumed = False
        try:
            status = response.status
            location = response.headers.get('Location')
            if status in (301, 302, 303, 307, 308) and location:
                try:
                    url = clean_url(urljoin(request_url, location), allow_private=allow_private)
                except UrlError as exc:
                    raise FetchError('bad_url', 'redirect from %s refused: %s' % (request_url, exc),
                                     status=status, url=request_url) from None
                if status in (301, 302, 303):
                    method, params = 'GET', None
                continue
            if not 200 <= status < 300:
                raise FetchError('http_status', '%s answered HTTP %d' % (request_url, status),
                                 status=status, url=request_url)
            try:
                data = read_limited(response, max_bytes)
            except BodyTooLarge as exc:
                raise FetchError('too_large', '%s: %s' % (request_url, exc), status=status,
                                 url=request_url) from None
            except BodyReadError as exc:
                raise FetchError('unreachable', '%s: body read failed: %s' % (request_url, exc),
                                 status=status, url=request_url) from None
            consumed = True
            return FetchResult(status=status, content_type=response.headers.get('Content-Type', ''),
                               body=data, url=request_url)
        finally:
            release(response, consumed)
    raise FetchError('http_status', 'more than %d redirects starting at %s' % (MAX_REDIRECTS, url), url=url)
