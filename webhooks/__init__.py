"""webhooks: the HTTP side of a call. Document fetches (answer/action/redirect, with fallback and
signatures), URL checks, and the durable webhook outbox and its delivery worker."""
from .http_client import describe_request_error
from .fetch import FetchError, FetchResult, fetch_document
from .outbox import Outbox, OutboxError
from .signing import sign_headers, verify_v2, verify_v3
from .urls import UrlError, checked_addresses, clean_url, is_public_address

__all__ = ['fetch_document', 'FetchResult', 'FetchError', 'Outbox', 'OutboxError',
           'sign_headers', 'verify_v2', 'verify_v3', 'clean_url', 'UrlError',
           'checked_addresses', 'is_public_address', 'describe_request_error']
