"""webhooks: the HTTP side of a call. Document fetches (answer/action/redirect, with fallback and
signatures), URL checks, the durable webhook outbox and its delivery worker, and call records.
and the Flask app (`create_app`: REST API, recordings, ops, metrics)."""
from .app import create_app
from .http_client import describe_request_error
from .fetch import FetchError, FetchResult, fetch_document, fetch_with_fallback
from .outbox import Outbox, OutboxError
from .signing import sign_headers, verify_v2, verify_v3
from .store import Store
from .urls import UrlError, clean_url

__all__ = ['fetch_document', 'fetch_with_fallback', 'FetchResult', 'FetchError', 'Outbox', 'OutboxError',
           'Store', 'sign_headers', 'verify_v2', 'verify_v3', 'clean_url', 'UrlError', 'create_app', 'describe_request_error']
