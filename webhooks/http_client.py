"""The HTTP plumbing shared by document fetches and the outbox: urllib3 connection pools, one request
(`send`, no redirects, no retries, connect/read timeouts), the User-Agent, request bodies (form /
JSON / GET query), bounded body reads and one description of a failed request.

urllib3 is used directly, without the requests layer on top: per request, requests' session
machinery (prepare_request, merge_environment_settings, hooks, cookie jars) cost about as much CPU as
the HTTP exchange itself (BENCHMARKS.md, "Calls and memory", C3). What requests did for us is done
here: TLS verified against requests' CA bundle (certifi), no proxies or .netrc from the environment,
no cookies (urllib3 keeps none), the same Accept-Encoding, redirects handled by the callers.

Before reusing a kept-alive connection urllib3 checks it was not dropped (`is_connected`: a poll
with a zero timeout). Under gevent's monkey-patching that poll switches to the hub and back, one
more trip round every other call's ready work per request; our connection classes ask the OS
directly (the unpatched `select.poll`), which never blocks: same answer, no hub trip.

A pool made with `resolve` (urls.checked_addresses with allow_private=False, for
`allow_private_urls = false`) dials only addresses that function returned: the host name is
resolved once, every address checked, and the socket connected to a checked address, while the
Host header, SNI and certificate check keep the name (urllib3 connects to `_dns_host` and speaks to
`host`). A refused address raises UrlError (RequestFailed: `.refused`, not retryable).
"""
import functools
import http.client
import importlib.metadata
import json
import select
import socket
from urllib.parse import urlencode

import requests
import urllib3
from gevent import monkey

from .signing import param_pairs, with_query
from .urls import UrlError

FORM_TYPE = 'application/x-www-form-urlencoded'
JSON_TYPE = 'application/json'
# what requests sent (gzip, deflate, and br/zstd when their decoders are installed)
ACCEPT_ENCODING = urllib3.util.make_headers(accept_encoding=True)['accept-encoding']


@functools.lru_cache(maxsize=None)
def default_user_agent():
    """callfork/<version>; looked up once (importlib.metadata reads and parses files each time)."""
    try:
        version = importlib.metadata.version('callfork')
    except importlib.metadata.PackageNotFoundError:
        version = '0'
    return 'callfork/%s' % version


_os_poll = monkey.get_original('select', 'poll')


def _readable_now(sock):
    """True if `sock` has data or EOF waiting: one poll(2) with a zero timeout, straight to the OS."""
    poller = _os_poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _dial_checked(conn, new_conn):
    """Connect `conn` to an address its `resolve` returned (resolved once, checked), trying each in
    turn: `new_conn` (urllib3's) dials `_dns_host`, set to the address for the attempt."""
    try:
        infos = conn.resolve(conn._dns_host, conn.port)
    except (socket.gaierror, UnicodeError) as exc:
        raise urllib3.exceptions.NameResolutionError(conn.host, conn, exc) from None
    name, failure = conn._dns_host, None
    try:
        for address in dict.fromkeys(info[4][0] for info in infos):
            conn._dns_host = address
            try:
                return new_conn()
            except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError) as exc:
                failure = exc
    finally:
        conn._dns_host = name
    raise failure or urllib3.exceptions.NameResolutionError(conn.host, conn, socket.gaierror('no address'))


class _Connection(urllib3.connection.HTTPConnection):
    resolve = None  # (host, port) -> getaddrinfo tuples to dial (UrlError: refused); None: urllib3's lookup

    @property
    def is_connected(self):
        # an idle kept-alive connection that is readable was closed (or spoken on) by the server
        return self.sock is not None and not _readable_now(self.sock)

    def _new_conn(self):
        return super()._new_conn() if self.resolve is None else _dial_checked(self, super()._new_conn)


class _TLSConnection(urllib3.connection.HTTPSConnection):
    resolve = None
    is_connected = _Connection.is_connected

    def _new_conn(self):
        return super()._new_conn() if self.resolve is None else _dial_checked(self, super()._new_conn)


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


def pool_classes(resolve=None):
    """urllib3 pool classes by scheme (for a PoolManager's `pool_classes_by_scheme`); with `resolve`,
    their connections dial only the addresses it returns (see the module docstring)."""
    if resolve is None:
        return {'http': _Pool, 'https': _TLSPool}
    extra = {'resolve': staticmethod(resolve)}
    conn = type('_CheckedConnection', (_Connection,), extra)
    tls = type('_CheckedTLSConnection', (_TLSConnection,), extra)
    return {'http': type('_CheckedPool', (_Pool,), {'ConnectionCls': conn}),
            'https': type('_CheckedTLSPool', (_TLSPool,), {'ConnectionCls': tls})}


def new_pool(pool_size=32, hosts=32, resolve=None):
    """A urllib3 PoolManager: per host (up to `hosts` of them, least recently used dropped), up to
    `pool_size` keep-alive connections are kept for reuse. More requests than that may be in flight
    to one host at once (the pool never blocks), but the connections beyond `pool_size` are closed
    after use (urllib3 logs "Connection pool is full, discarding connection"), and the next burst
    pays new TCP connects: size it to the expected concurrency. No proxies, no cookies; HTTPS is
    verified against the CA bundle requests uses. `resolve`: see `pool_classes`."""
    manager = urllib3.PoolManager(num_pools=hosts, maxsize=pool_size, block=False, retries=False,
                                  cert_reqs='CERT_REQUIRED', ca_certs=requests.certs.where())
    manager.pool_classes_by_scheme = pool_classes(resolve)
    return manager


class RequestFailed(Exception):
    """No HTTP answer: `.reason` (describe_request_error), `.retryable` (a connection-level problem:
    refused, reset, DNS, TLS, timeouts) or not (the URL or a header cannot be sent), `.bad_url`,
    `.refused` (the address it resolved to is not allowed: UrlError)."""

    def __init__(self, exc):
        super().__init__(describe_request_error(exc))
        self.reason = str(self)
        self.refused = isinstance(exc, UrlError)
        self.bad_url = self.refused or isinstance(exc, (urllib3.exceptions.LocationValueError,
                                                        http.client.InvalidURL))
        self.retryable = not (self.bad_url or isinstance(exc, ValueError))
        self.error = exc


def send(pool, method, url, body, headers, timeouts):
    """One request, no redirects followed, no retries: the urllib3 response with its body unread
    (read it with read_limited or drain, then `release`). timeouts = (connect_s, read_s).
    Raises RequestFailed."""
    try:
        return pool.request(method, url, body=body, headers=headers, redirect=False, retries=False,
                            preload_content=False, decode_content=True,
                            timeout=urllib3.Timeout(connect=timeouts[0], read=timeouts[1]))
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, ValueError) as exc:
        raise RequestFailed(exc) from None


def release(response, consumed):
    """Give the response's connection back: reused if its body was read to the end (`consumed`),
    closed otherwise (an unread body would corrupt the next request on it)."""
    if not consumed:
        response.close()
    response.release_conn()


def drain(response, limit, chunk_size=16384):
    """Read and drop up to `limit` bytes of the body; True if it ended within them."""
    read = 0
    try:
        while read < limit:
            chunk = response.read(chunk_size, decode_content=True)
            if not chunk:
                return True
            read += len(chunk)
    except (urllib3.exceptions.HTTPError, OSError):
        pass  # the status line already counts; the body is not ours to judge
    return False


def flatten_json(value, prefix=''):
    """Nested JSON as flat dotted pairs: {"params": {"state": "x"}} -> [("params.state", "x")].
    Used for JSON callbacks sent with GET (SWML leaves that encoding undocumented)."""
    pairs = []
    if isinstance(value, dict):
        for key, item in value.items():
            pairs.extend(flatten_json(item, '%s.%s' % (prefix, key) if prefix else str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            pairs.extend(flatten_json(item, '%s.%d' % (prefix, index) if prefix else str(index)))
    elif value is None:
        pairs.append((prefix, ''))
    elif isinstance(value, bool):
        pairs.append((prefix, 'true' if value else 'false'))
    else:
        pairs.append((prefix, str(value)))
    return pairs


def build_request(url, method, params, encoding='form'):
    """(request_url, body_bytes_or_None, content_type_or_None, sign_params) for one webhook request.

    form/POST: urlencoded body. json/POST: JSON body (params may be any JSON value). GET: the params
    (flattened when JSON) appended to the query string. sign_params are what V1/V3-sdk sign.
    """
    method = method.upper()
    if encoding == 'json':
        pairs = flatten_json(params) if params not in (None, {}) else []
        if method == 'GET':
            return with_query(url, pairs), None, None, pairs
        body = json.dumps(params if params is not None else {}, separators=(',', ':'),
                          default=str).encode('utf-8')
        return url, body, JSON_TYPE, None
    if encoding != 'form':
        raise ValueError('encoding must be "form" or "json", not %r' % (encoding,))
    pairs = param_pairs(params)
    if method == 'GET':
        return with_query(url, pairs), None, None, pairs
    return url, urlencode(pairs).encode('ascii'), FORM_TYPE, pairs


class BodyTooLarge(Exception):
    def __init__(self, limit, seen):
        super().__init__('response body larger than %d bytes (stopped after %d)' % (limit, seen))
        self.limit = limit
        self.seen = seen


class BodyReadError(Exception):
    """The connection failed while the body was being read (reset, timeout, bad chunking/encoding)."""


def read_limited(response, max_bytes, chunk_size=16384):
    """Read at most max_bytes+1 (decoded) bytes of a urllib3 response opened with
    preload_content=False; BodyTooLarge past max_bytes, BodyReadError if the connection fails
    meanwhile. A Content-Length above the limit fails before reading anything."""
    declared = response.headers.get('Content-Length')
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(max_bytes, 0)
    chunks = []
    total = 0
    while True:
        want = min(chunk_size, max_bytes + 1 - total)
        try:
            chunk = response.read(want, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BodyReadError('%s: %s' % (type(exc).__name__, exc)) from None
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise BodyTooLarge(max_bytes, total)


def describe_request_error(exc):
    """A short reason for a failed request, from urllib3's exceptions (fetches, the outbox) or
    requests' (the media cache): connect timeout, read timeout, TLS error, DNS lookup failed,
    connection refused, or the exception's own text."""
    u3 = urllib3.exceptions
    if isinstance(exc, UrlError):
        return str(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout) or (
            isinstance(exc, u3.ConnectTimeoutError) and not isinstance(exc, u3.NewConnectionError)):
        return 'connect timeout'
    if isinstance(exc, (requests.exceptions.ReadTimeout, u3.ReadTimeoutError)):
        return 'read timeout'
    if isinstance(exc, (requests.exceptions.SSLError, u3.SSLError)):
        return 'TLS error: %s' % (exc,)
    text = str(exc)
    if (isinstance(exc, u3.NameResolutionError) or 'Name or service not known' in text or 'getaddrinfo' in text
            or 'NameResolution' in text):
        return 'DNS lookup failed: %s' % text
    if 'refused' in text.lower():
        return 'connection refused'
    if isinstance(exc, requests.exceptions.RequestException):  # (an OSError too)
        if isinstance(exc, requests.exceptions.ConnectionError):
            return 'connection error: %s' % text
    elif isinstance(exc, (u3.NewConnectionError, u3.ProtocolError, OSError)):
        return 'connection error: %s' % text
    return '%s: %s' % (type(exc).__name__, text)
