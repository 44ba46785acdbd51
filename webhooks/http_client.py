"""The HTTP plumbing shared by document fetches and the outbox: one cookie-less requests session, the
User-Agent, request bodies (form / JSON / GET query) and bounded body reads."""
import http.cookiejar
import importlib.metadata
import json
from urllib.parse import urlencode

import requests
import urllib3
from requests.adapters import HTTPAdapter

from .signing import param_pairs, with_query

FORM_TYPE = 'application/x-www-form-urlencoded'
JSON_TYPE = 'application/json'


def default_user_agent():
    try:
        version = importlib.metadata.version('callfork')
    except importlib.metadata.PackageNotFoundError:
        version = '0'
    return 'callfork/%s' % version


def new_session(pool_size=32):
    """A session that keeps connections alive, stores no cookies (apps must not leak state into each
    other) and ignores proxy/.netrc environment settings (deterministic requests)."""
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount('http://', adapter)
    session.mount('https://', adapter)
    return session


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
    """Read at most max_bytes+1 (decoded) bytes of a streamed response; BodyTooLarge past max_bytes,
    BodyReadError if the connection fails meanwhile. A Content-Length above the limit fails before
    reading anything."""
    declared = response.headers.get('Content-Length')
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(max_bytes, 0)
    chunks = []
    total = 0
    while True:
        want = min(chunk_size, max_bytes + 1 - total)
        try:
            chunk = response.raw.read(want, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise BodyReadError('%s: %s' % (type(exc).__name__, exc)) from None
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise BodyTooLarge(max_bytes, total)


def describe_request_error(exc):
    """A short reason for a failed request (requests wraps urllib3's long messages): connect timeout,
    read timeout, TLS error, DNS lookup failed, connection refused, or the exception's own text."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return 'connect timeout'
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return 'read timeout'
    if isinstance(exc, requests.exceptions.SSLError):
        return 'TLS error: %s' % (exc,)
    text = str(exc)
    if 'Name or service not known' in text or 'getaddrinfo' in text or 'NameResolution' in text:
        return 'DNS lookup failed: %s' % text
    if 'refused' in text.lower():
        return 'connection refused'
    if isinstance(exc, requests.exceptions.ConnectionError):
        return 'connection error: %s' % text
    return '%s: %s' % (type(exc).__name__, text)
