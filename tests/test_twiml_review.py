"""Defects found reviewing issue 14's TwiML and Twilio REST work, each pinned by a test that failed
before its fix."""
from __future__ import annotations

import pytest

from verbs.document import parse_document
from verbs.errors import XMLError
from verbs.twiml.parser import parse_twiml


@pytest.mark.parametrize("attribute", ['action="http://[::1"', 'action="//[::1"'])
def test_a_malformed_relative_or_absolute_url_is_a_document_error(attribute):
    # urlsplit raises ValueError for an unclosed IPv6 bracket: it must be a line:column error of the
    # document (the call then ends as for any bad TwiML, its fallback URL is tried), not a crash
    with pytest.raises(XMLError) as info:
        parse_twiml(f"<Response><Gather {attribute}/></Response>".encode())
    assert "line 1:11" in str(info.value) and "action" in str(info.value)
    with pytest.raises(XMLError):
        parse_document(b"<Response><Redirect>//[::1</Redirect></Response>", None, api="twilio")
