"""Hostile and broken Vobiz XML: entity attacks, huge and deep documents, garbage, wrong roots, syntax errors."""
import random
import time

import pytest

from verbs import DocumentError, XMLError, parse_document

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Response><Speak>&lol9;</Speak></Response>"""


def xml_error(body, content_type="application/xml"):
    with pytest.raises(XMLError) as info:
        parse_document(body, content_type)
    return info.value


def test_billion_laughs_is_refused_quickly():
    start = time.monotonic()
    err = xml_error(BILLION_LAUGHS)
    assert time.monotonic() - start < 1.0
    assert "DOCTYPE" in err.message and (err.line, err.column) == (2, 1)


@pytest.mark.parametrize("target", ["file:///etc/passwd", "http://127.0.0.1:1/evil.dtd"])
def test_external_entities_are_refused(target):
    body = (f'<?xml version="1.0"?>\n<!DOCTYPE r [ <!ENTITY xxe SYSTEM "{target}"> ]>\n'
            "<Response><Speak>&xxe;</Speak></Response>")
    err = xml_error(body)
    assert "DOCTYPE" in err.message and "root:" not in str(err)


def test_external_dtd_is_refused():
    err = xml_error('<!DOCTYPE Response SYSTEM "http://127.0.0.1:1/x.dtd"><Response/>')
    assert "DOCTYPE" in err.message


def test_undeclared_entity_is_a_syntax_error():
    err = xml_error("<Response><Speak>&xxe;</Speak></Response>")
    assert err.line == 1 and "xxe" in err.message


def test_doctype_text_inside_a_comment_or_cdata_is_fine():
    doc = parse_document("<!-- <!DOCTYPE x> --><Response><Speak><![CDATA[<!DOCTYPE y>]]></Speak></Response>",
                         "application/xml")
    assert doc.verbs[0].text == "<!DOCTYPE y>"


def test_10mb_body_is_refused_before_parsing():
    body = b"<Response>" + b"<Speak>x</Speak>" * (10 * 1024 * 1024 // 16) + b"</Response>"
    start = time.monotonic()
    err = xml_error(body)
    assert time.monotonic() - start < 1.0
    assert err.message.startswith(f"document is {len(body)} bytes; the limit is 100 KB")


def test_100kb_is_the_limit():
    head, tail = b"<Response><Speak>", b"</Speak></Response>"
    exact = head + b"x" * (100 * 1024 - len(head) - len(tail)) + tail
    assert len(exact) == 102400
    assert parse_document(exact, "application/xml").verbs[0].name == "Speak"
    assert "limit is 100 KB" in xml_error(exact[:-len(tail)] + b"x" + tail).message


def test_binary_garbage():
    garbage = bytes(random.Random(7).randrange(256) for _ in range(4096))
    err = xml_error(garbage)
    assert "binary" in err.message


def test_html_answer():
    err = xml_error("<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>oops</body></html>")
    assert "the answer is HTML, not Vobiz XML" in err.message
    assert "HTML" in xml_error("<html><body>x</body></html>").message


def test_json_given_as_xml():
    err = xml_error('{"version": "1.0.0", "sections": {"main": []}}')
    assert "the answer is JSON, not Vobiz XML" in err.message


def test_plain_text_and_empty_given_as_xml():
    assert "plain text" in xml_error("OK").message
    assert "empty" in xml_error("   \n").message
    assert "empty" in xml_error(b"").message


def test_wrong_root():
    err = xml_error("<?xml version='1.0'?>\n<Foo><Speak>x</Speak></Foo>")
    assert (err.line, err.column, err.element) == (2, 1, "Foo")
    assert "<Response>" in err.message


def test_several_roots():
    err = xml_error("<Response/>\n<Response/>")
    assert err.line == 2 and "malformed XML" in err.message


@pytest.mark.parametrize("tag,levels", [("PreAnswer", 10), ("PreAnswer", 300), ("a", 10000)])
def test_deep_nesting_is_refused(tag, levels):
    body = "<Response>" + f"<{tag}>" * levels + f"</{tag}>" * levels + "</Response>"
    assert len(body) <= 100 * 1024
    start = time.monotonic()
    err = xml_error(body)
    assert time.monotonic() - start < 1.0
    assert "nested too deeply" in err.message and err.line == 1


def test_unclosed_tag_reports_the_syntax_error_position():
    err = xml_error("<Response>\n  <Speak>Hello\n  <Play>https://a/x.mp3</Play>\n</Response>")
    # libxml2 notices the mismatch at </Response> (line 4) and names the unclosed <Speak>
    assert err.line == 4 and err.column > 0 and "Speak" in err.message
    err = xml_error("<Response>\n  <Speak>Hello")
    assert (err.line, err.column) == (2, 15) and "malformed XML" in err.message


def test_unescaped_ampersand_in_url_is_a_syntax_error():
    # vobiz.md §1.3: "An unescaped & in a URL is enough to cause" 8011 Invalid Answer XML
    err = xml_error("<Response>\n<Play>https://a/x.mp3?a=1&b=2</Play>\n</Response>")
    assert err.line == 2 and err.column > 0


def test_mutated_documents_only_raise_document_errors():
    seed_docs = [BILLION_LAUGHS.encode(), b'<Response><Stream bidirectional="true">wss://a/ws</Stream>'
                 b'<Gather action="https://a/g"><Speak>x</Speak></Gather><DTMF>12</DTMF></Response>']
    rnd = random.Random(1234)
    tokens = [b"<", b">", b"/", b'"', b"&", b"=", b"\x00", b"\xff", b"<Speak>", b"</Response>", b"<!--", b"]]>"]
    for _ in range(1500):
        body = bytearray(rnd.choice(seed_docs))
        for _ in range(rnd.randint(1, 3)):
            pos = rnd.randrange(len(body) + 1)
            if rnd.random() < 0.5:
                body[pos:pos] = rnd.choice(tokens)
            else:
                del body[pos:pos + rnd.randint(1, 8)]
        try:
            parse_document(bytes(body), rnd.choice([None, "application/xml", "text/html"]))
        except DocumentError:
            pass
