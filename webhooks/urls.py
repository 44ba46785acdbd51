"""Checking URLs an application gives us (docs/decisions.md): fragment stripped, allowed schemes only, and
private/loopback targets refused unless allowed. Raises `UrlError` with a message fit for a log line.

Two checks make `allow_private_urls = false` hold:
- `clean_url` when a URL is taken: the text must mean one thing to every parser on the way (ours,
  urllib3's `parse_url` that the HTTP client connects with, websockets' for streams), so
  backslashes, user info (`user@host`), spaces and control characters are refused, and the host
  checked is the host urllib3 connects to; IP literals and (when `resolve`) the addresses the name
  has now must be public.
- `checked_addresses` when a connection is made: the name is resolved once, every address is
  checked, and the connection dials one of those addresses (webhooks/http_client.py, the stream's
  WebSocket), never the answer of a second lookup that a rebinding DNS server could make private.

"Public" is `is_public_address`: globally reachable (`is_global`), and not multicast, unspecified,
reserved, site-local, 6to4 (2002::/16) or a NAT64 local-use prefix; an IPv4 address carried in an
IPv6 one (IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96) is judged as that IPv4 address.
"""
import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url


class UrlError(ValueError):
    """A URL we will not request; `.url` is the offending value."""

    def __init__(self, message, url=None):
        super().__init__(message)
        self.url = url


_NAT64 = ipaddress.ip_network('64:ff9b::/96')                  # RFC 6052: the IPv4 address is the last 32 bits
_NOT_PUBLIC_V6 = tuple(ipaddress.ip_network(n) for n in (
    '2002::/16',        # 6to4 (RFC 3056, deprecated by RFC 7526): reaches whatever IPv4 address it embeds
    '64:ff9b:1::/48',   # NAT64 local use (RFC 8215)
    '3fff::/20',        # documentation (RFC 9637)
    '::/96',            # IPv4-compatible (deprecated) and the unspecified address
))


def is_public_address(ip):
    """True if `ip` (an ipaddress object or text) is a public unicast address callfork may connect to
    with `allow_private_urls = false`."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split('%')[0])
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return is_public_address(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xffffffff))
        if ip.is_site_local or any(ip in net for net in _NOT_PUBLIC_V6):
            return False
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                                 or ip.is_unspecified or ip.is_reserved)


def checked_addresses(host, port, *, allow_private=False, family=socket.AF_UNSPEC):
    """Resolve `host` once (getaddrinfo, TCP) and return the getaddrinfo tuples to connect to; with
    allow_private=False every address must be public, else UrlError (refused). A lookup failure
    raises socket.gaierror. Connect to these addresses, not to a new lookup's."""
    host = host.strip('[]')
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    if not allow_private:
        for info in infos:
            if not is_public_address(info[4][0]):
                what = host if _is_ip(host) else 'host %s resolves to an address that' % host
                raise UrlError('URL refused: %s is private or loopback (not public), not allowed' % what)
    return infos


def _is_ip(host):
    try:
        ipaddress.ip_address(host.split('%')[0])
    except ValueError:
        return False
    return True


def _same_host(ours, connected):
    ours = ours.lower().rstrip('.').replace('%25', '%')   # an IPv6 zone: fe80::1%25eth0
    connected = connected.lower().strip('[]').rstrip('.')
    if ours == connected:
        return True
    try:
        return ours.encode('idna').decode('ascii') == connected
    except UnicodeError:
        return False


def clean_url(url, *, allow_private=True, schemes=('http', 'https'), resolve=True):
    """Return `url` without its fragment, or raise UrlError.

    Refused always: spaces, control and other non-printable characters, backslashes, user info, and
    any URL whose host or port urllib3 reads differently from urllib.parse. With allow_private=False,
    IP literals and (when `resolve`) every address the host name resolves to must be public
    (`is_public_address`); the connection checks again what it dials (`checked_addresses`).
    """
    if not isinstance(url, str):
        raise UrlError('URL must be text, not %s' % type(url).__name__, url)
    text = url.strip()
    if not text:
        raise UrlError('URL is empty', url)
    if any(ch == ' ' or not ch.isprintable() for ch in text):
        raise UrlError('URL contains spaces or control characters: %r' % text, url)
    if '\\' in text:
        raise UrlError('URL refused: it contains a backslash, which HTTP clients read in different ways: %r'
                       % text, url)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UrlError('malformed URL %r: %s' % (text, exc), url) from None
    scheme = parts.scheme.lower()
    allowed = tuple(s.lower() for s in schemes)
    if scheme not in allowed:
        raise UrlError('URL scheme %r not allowed (allowed: %s): %r'
                       % (parts.scheme or '', ', '.join(allowed), text), url)
    host = parts.hostname
    if not host:
        raise UrlError('URL has no host: %r' % text, url)
    if '@' in parts.netloc:
        raise UrlError('URL refused: user info (user@host) is not supported and makes the host '
                       'ambiguous: %r' % text, url)
    try:
        connected = parse_url(text)  # what urllib3 (the HTTP client) connects to
    except LocationParseError as exc:
        raise UrlError('malformed URL %r: %s' % (text, exc), url) from None
    if not connected.host or not _same_host(host, connected.host) or connected.port != port:
        raise UrlError('URL refused: its host is read in different ways (%s:%s or %s:%s): %r'
                       % (host, port, connected.host, connected.port, text), url)
    if not allow_private:
        lowered = host.lower().rstrip('.')
        if lowered == 'localhost' or lowered.endswith('.localhost'):
            raise UrlError('URL refused: %s is a loopback host, not allowed: %r' % (host, text), url)
        if _is_ip(host):
            if not is_public_address(host):
                raise UrlError('URL refused: %s is private or loopback (not public), not allowed: %r'
                               % (host, text), url)
        elif resolve:
            default_port = {'https': 443, 'wss': 443}.get(scheme, 80)
            try:
                checked_addresses(host, port or default_port)
            except UrlError as exc:
                raise UrlError('%s: %r' % (exc, text), url) from None
            except (OSError, UnicodeError) as exc:
                raise UrlError('cannot resolve host %r to check it is public: %s' % (host, exc), url) from None
    return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ''))
