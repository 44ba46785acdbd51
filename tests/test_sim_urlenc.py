"""switch_sim.urlenc: FreeSWITCH's switch_url_encode_opt rule, checked against the rule's definition
(FreeSWITCH's switch_event.c) and against values seen on the wire in the captures."""
import pytest

from sim_support import captured_events
from switch_sim.urlenc import SWITCH_URL_UNSAFE, url_decode, url_encode


@pytest.mark.parametrize('raw,encoded', [
    (' ', '%20'), ('+', '%2B'), (':', '%3A'), ('\n', '%0A'), ('\r', '%0D'), ('#', '%23'), ('&', '%26'),
    (';', '%3B'), ('<', '%3C'), ('=', '%3D'), ('>', '%3E'), ('?', '%3F'), ('@', '%40'), ('[', '%5B'),
    ('\\', '%5C'), (']', '%5D'), ('^', '%5E'), ('`', '%60'), ('{', '%7B'), ('|', '%7C'), ('}', '%7D'),
    ('"', '%22'), ('\t', '%09'), ('\x7f', '%7F'), ('é', '%C3%A9'),
    # literal characters
    ('/', '/'), (',', ','), ('-', '-'), ('.', '.'), ('_', '_'), ('~', '~'), ("'", "'"), ('(', '('),
    (')', ')'), ('*', '*'), ('!', '!'), ('$', '$'), ('abcXYZ019', 'abcXYZ019'),
    # % : encoded unless it already starts a %XX escape (no double encoding)
    ('%', '%25'), ('100%', '100%25'), ('%zz', '%25zz'), ('%4', '%254'), ('%2B', '%2B'), ('%0a', '%0a'),
    ('', ''),
])
def test_encoding_table(raw, encoded):
    assert url_encode(raw) == encoded


def test_every_unsafe_character_is_encoded_uppercase():
    for ch in SWITCH_URL_UNSAFE:
        if ch == '%':
            continue
        assert url_encode(ch) == '%%%02X' % ord(ch)
    for byte in range(0x20):
        assert url_encode(chr(byte)) == '%%%02X' % byte


def test_roundtrip_of_arbitrary_text():
    text = 'flite|kal|Hello, "world": 100% <ok> & {x} é\n'
    assert url_decode(url_encode(text)) == text


def test_capture_values_reencode_identically():
    """Every value FreeSWITCH sent in the outbound capture re-encodes to the same bytes."""
    seen = 0
    for _name, headers in captured_events('outbound-esl-transcript.txt'):
        for key, value in headers:
            if value == '_undef_':
                continue
            assert url_encode(url_decode(value)) == value, (key, value)
            seen += 1
    assert seen > 1000
