"""clean_url (docs/decisions.md): fragments stripped, schemes enforced, private targets refused on request."""
import pytest

from webhooks import UrlError, clean_url


def test_fragment_is_stripped_and_rest_kept():
    assert clean_url('https://x.example/cb?a=1&b=2#ct=2000&rt=40000') == 'https://x.example/cb?a=1&b=2'
    assert clean_url('  http://127.0.0.1:5000/answer  ') == 'http://127.0.0.1:5000/answer'


@pytest.mark.parametrize('url', ['ftp://x.example/a', 'file:///etc/passwd', 'javascript:alert(1)',
                                 'x.example/answer', 'wss://x.example/ws'])
def test_other_schemes_rejected(url):
    with pytest.raises(UrlError) as info:
        clean_url(url)
    assert 'scheme' in str(info.value)


def test_ws_schemes_when_asked():
    assert clean_url('wss://x.example/ws#f', schemes=('ws', 'wss')) == 'wss://x.example/ws'


@pytest.mark.parametrize('url', ['', '   ', 'http://', 'http:///path', 'http://exa mple.com/',
                                 'http://x.example/\r\nHost: evil', 'http://x.example:99999/'])
def test_malformed_rejected(url):
    with pytest.raises(UrlError):
        clean_url(url)


def test_non_text_rejected():
    with pytest.raises(UrlError):
        clean_url(None)


@pytest.mark.parametrize('url', ['http://127.0.0.1/a', 'http://localhost:8080/a', 'http://10.1.2.3/',
                                 'http://192.168.0.10/', 'http://172.16.5.5/', 'http://169.254.169.254/meta',
                                 'http://[::1]/', 'http://[fd00::1]/', 'http://[::ffff:127.0.0.1]/',
                                 'http://0.0.0.0/', 'http://api.localhost/'])
def test_private_targets(url):
    assert clean_url(url) == url  # allowed by default (the demo runs on loopback)
    with pytest.raises(UrlError) as info:
        clean_url(url, allow_private=False)
    assert 'not allowed' in str(info.value)


def test_public_ip_literal_allowed_when_private_forbidden():
    assert clean_url('https://93.184.216.34/x', allow_private=False) == 'https://93.184.216.34/x'
    assert clean_url('https://[2606:4700::1111]/x', allow_private=False) == 'https://[2606:4700::1111]/x'
