"""Answer documents and what they do on a call.

Parsing Vobiz XML and SWML into typed verb objects with source positions (one module per verb,
each with its `run(call)`), the call context verbs see, the interpreter loop, hangup codes and the
hangup webhook, recordings and live streams.

Public API (docs/internals.md): parse_document, Document, DocumentError, XMLError, SWMLError,
NotSupportedError, validate_source, CallContext, flite_voice, Interpreter, CallEnd, SOURCE_API, LiveStream,
StreamOptions, rest_stream_options, hangup_fields, plain_number, ApiRecording, RecordingNotStarted.
"""
from .api_recording import ApiRecording, RecordingNotStarted
from .conferencing import fs_room_name, vobiz_room_name
from .context import CallContext, flite_voice, plain_number
from .document import Document, parse_document
from .errors import DocumentError, NotSupportedError, SWMLError, XMLError
from .hangup_codes import SOURCE_API, CallEnd
from .hangup_webhook import hangup_fields
from .interpreter import Interpreter
from .streaming import LiveStream, StreamOptions, rest_stream_options
from .validate import validate_source

__all__ = ["parse_document", "Document", "DocumentError", "XMLError", "SWMLError", "NotSupportedError",
           "validate_source", "CallContext", "flite_voice", "Interpreter", "CallEnd", "SOURCE_API", "LiveStream",
           "StreamOptions", "rest_stream_options", "hangup_fields", "plain_number", "ApiRecording",
           "RecordingNotStarted", "fs_room_name", "vobiz_room_name"]
