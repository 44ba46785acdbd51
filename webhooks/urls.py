"""Checking URLs an application gives us (docs/decisions.md): fragment stripped, allowed schemes only, and
private/loopback targets refused unless allowed. Raises `UrlError` with a message fit for a log line."""
import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit


class UrlError(ValueError):
    """A URL we will not request; `.url` is the offending value."""

    def __init__(self, message, url=None):
        super().__init__(message)
        self.url = url


def _is_private_ip(ip):
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
            or ip.is_unspecified or ip.is_multicast)


def _resolve(host, port):
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise UrlError('cannot resolve host %r to check it is public: %s' % (host, exc)) from None
    return [ipaddress.ip_address(info[4][0].split('%')[0]) for info in infos]


def clean_url(url, *, allow_private=True, schemes=('http', 'https'), resolve=True):
    """Return `url` without its fragment, or raise UrlError.

    With allow_private=False, IP literals and (when `resolve`) every address the host name resolves to
    must be public: loopback, RFC 1918, link-local, unique-local, reserved and multicast are refused.
    """
    if not isinstance(url, str):
        raise UrlError('URL must be text, not %s' % type(url).__name__, url)
    text = url.strip()
    if not text:
        raise UrlError('URL is empty', url)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7f or ch == ' ' for ch in text):
        raise UrlError('URL contains spaces or control characters: %r' % text, url)
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
    if not allow_private:
        lowered = host.lower().rstrip('.')
        if lowered == 'localhost' or lowered.endswith('.localhost'):
            raise UrlError('URL targets a loopback host (%s), not allowed: %r' % (host, text), url)
        try:
            addresses = [ipaddress.ip_address(host.split('%')[0])]
        except ValueError:
            default_port = {'https': 443, 'wss': 443}.get(scheme, 80)
            addresses = _resolve(host, port or default_port) if resolve else []
        for address in addresses:
            if _is_private_ip(address):
                raise UrlError('URL targets a private or loopback address (%s -> %s), not allowed: %r'
                               % (host, address, text), url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ''))
