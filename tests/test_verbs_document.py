"""parse_document's choice of dialect (content type, then sniffing) and `callfork validate` (validate_source)."""
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from verbs import DocumentError, NotSupportedError, SWMLError, XMLError, parse_document, validate_source

FIXTURES = Path(__file__).parent / "fixtures" / "verbs"
XML = b'<?xml version="1.0"?>\n<Response><Speak>Hi</Speak></Response>'
JSON = b'{"version": "1.0.0", "sections": {"main": [{"answer": {}}, {"hangup": {}}]}}'
YAML = b"version: 1.0.0\nsections:\n  main:\n    - answer: {}\n    - hangup: {}\n"


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml", "text/xml; charset=utf-8",
                                          "Application/XML"])
def test_xml_content_types(content_type):
    doc = parse_document(XML, content_type)
    assert doc.kind == "vobiz" and doc.warnings == [] and doc.sections == {}


@pytest.mark.parametrize("content_type,body", [("application/json", JSON), ("application/yaml", YAML),
                                               ("text/x-yaml", YAML), ("text/yaml", YAML),
                                               ("application/json; charset=utf-8", JSON)])
def test_swml_content_types(content_type, body):
    doc = parse_document(body, content_type)
    assert doc.kind == "swml" and [v.name for v in doc.verbs] == ["answer", "hangup"] and doc.warnings == []


@pytest.mark.parametrize("content_type", ["text/html", "text/plain", None, "application/octet-stream"])
def test_sniffed_xml_is_accepted_with_a_warning(content_type):
    doc = parse_document(XML, content_type)
    assert doc.kind == "vobiz" and len(doc.warnings) == 1
    assert (content_type or "no Content-Type") in doc.warnings[0]


@pytest.mark.parametrize("body", [JSON, YAML])
def test_sniffed_swml_is_accepted_with_a_warning(body):
    doc = parse_document(body, "text/plain")
    assert doc.kind == "swml" and doc.warnings


@pytest.mark.parametrize("content_type", ["text/html", None])
def test_html_is_an_error(content_type):
    with pytest.raises(DocumentError, match="HTML"):
        parse_document(b"<!doctype html><html><body><h1>Not Found</h1></body></html>", content_type)


def test_other_bodies_without_a_dialect():
    with pytest.raises(DocumentError, match="plain text"):
        parse_document(b"Internal Server Error", "text/plain")
    with pytest.raises(DocumentError, match="empty"):
        parse_document(b"", None)
    with pytest.raises(DocumentError, match="binary"):
        parse_document(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png")


def test_content_type_wins_over_sniffing():
    with pytest.raises(XMLError, match="JSON"):
        parse_document(JSON, "application/xml")
    with pytest.raises(SWMLError, match="XML"):
        parse_document(XML, "application/json")


def test_errors_are_document_errors_with_positions():
    with pytest.raises(DocumentError) as info:
        parse_document(b"<Response>\n  <Wait length='x'/>\n</Response>", "text/xml")
    err = info.value
    assert isinstance(err, XMLError) and (err.line, err.column, err.element) == (2, 3, "Wait")
    assert str(err) == f"line 2:3: <Wait>: {err.message}" and "length" in err.message
    assert issubclass(NotSupportedError, DocumentError) and issubclass(NotSupportedError, NotImplementedError)


def test_document_error_without_element():
    err = XMLError("the answer is empty")
    assert str(err) == "line 0:0: the answer is empty" and err.element is None and len(err.errors) == 1


def test_size_limit_applies_to_every_dialect():
    big = b"version: 1.0.0\n" + b"#" * (200 * 1024)
    for content_type in ("application/yaml", None, "application/xml"):
        with pytest.raises(DocumentError, match="limit is 100 KB"):
            parse_document(big, content_type)


# ---- validate_source ----

def test_validate_valid_xml_file():
    code, text = validate_source(str(FIXTURES / "sdk_ex4_dial_getinput.xml"))
    assert code == 0
    lines = text.splitlines()
    assert "valid Vobiz XML, 5 verbs" in lines[0]
    # one line per verb with its position and key attributes; children indented under their parent
    assert lines[1].startswith("  2:3 Dial") and "callerId=+14155550100" in lines[1]
    assert lines[2].startswith("    3:5 Number +14155550101") and "sendDigits=wwww2410" in lines[2]
    assert lines[3].startswith("    4:5 User sip:agent@example.com")
    assert lines[4].startswith("  6:3 GetInput") and "inputType=dtmf speech" in lines[4]
    assert any(line.startswith("  11:3 Redirect https://app.example.com/next") for line in lines)


def test_validate_valid_swml_files():
    code, text = validate_source(str(FIXTURES / "swml_ref_1_1.yaml"))
    assert code == 0 and "valid SWML, 5 verbs" in text
    assert "5:7 stream wss://example.com/audio-stream" in text
    code, text = validate_source(str(FIXTURES / "swml_ref_1_1.json"))
    assert code == 0 and "4:5 stream" in text


def test_validate_invalid_file_lists_every_error(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<Response>\n  <Speak loop='x'>Hi</Speak>\n  <Stream audioTrack='up'>wss://a/ws</Stream>\n"
                    "  <Spek/>\n</Response>\n")
    code, text = validate_source(str(path))
    assert code == 1
    lines = text.splitlines()
    assert "3 errors" in lines[0]
    assert lines[1].startswith("  line 2:3: <Speak>: loop")
    assert lines[2].startswith("  line 3:3: <Stream>: audioTrack")
    assert lines[3].startswith("  line 4:3: <Spek>: unknown element")


def test_validate_syntax_error_file(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text("<Response>\n  <Speak>Hi\n")
    code, text = validate_source(str(path))
    assert code == 1 and "line 3:" in text and "malformed XML" in text


def test_validate_not_supported_swml(tmp_path):
    path = tmp_path / "dial.json"
    path.write_text('{"sections": {"main": [{"connect": {"to": "+15551234567", "confirm": "https://a.example/c"}}]}}')
    code, text = validate_source(str(path))
    assert code == 1 and "not supported" in text and "line 1:" in text


def test_validate_warnings_are_shown(tmp_path):
    path = tmp_path / "w.xml"
    path.write_text("<Response><DTMF>12x</DTMF></Response>")
    code, text = validate_source(str(path))
    assert code == 0 and "warnings:" in text and "ignored" in text


def test_validate_missing_file_and_too_big_file(tmp_path):
    code, text = validate_source(str(tmp_path / "nope.xml"))
    assert code == 1 and "cannot read" in text
    big = tmp_path / "big.xml"
    big.write_bytes(b"<Response>" + b" " * (200 * 1024) + b"</Response>")
    code, text = validate_source(str(big))
    assert code == 1 and "limit is 100 KB" in text


class _Handler(BaseHTTPRequestHandler):
    routes = {"/ok.xml": (200, "application/xml", XML), "/swml": (200, "application/json", JSON),
              "/gone": (404, "text/html", b"<html><body>nope</body></html>"),
              "/html": (200, "text/html", b"<!DOCTYPE html><html><body>login</body></html>")}

    def do_GET(self):
        status, content_type, body = self.routes.get(self.path, (404, "text/plain", b"no"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_base():
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_validate_urls(http_base):
    code, text = validate_source(http_base + "/ok.xml")
    assert code == 0 and "valid Vobiz XML, 1 verb" in text
    code, text = validate_source(http_base + "/swml")
    assert code == 0 and "valid SWML, 2 verbs" in text
    code, text = validate_source(http_base + "/gone")
    assert code == 1 and "404" in text
    code, text = validate_source(http_base + "/html")
    assert code == 1 and "HTML" in text


def test_validate_unreachable_url():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]      # closed again: nothing listens there
    code, text = validate_source(f"http://127.0.0.1:{port}/answer")
    assert code == 1 and "cannot fetch" in text


def test_yaml_with_leading_comments_is_sniffed():
    body = b"# my IVR\n---\nsections:\n  main:\n    - answer\n"
    doc = parse_document(body, None)
    assert doc.kind == "swml" and doc.verbs[0].name == "answer" and doc.warnings
