"""webhooks: the HTTP side of a call. Document fetches (answer/action/redirect, with fallback and
signatures: Vobiz's, or Twilio's for Twilio apps), URL checks, and the durable webhook outbox and its delivery worker."""
from .http_client import describe_request_error
from .fetch import FetchError, FetchResult, fetch_document
from .outbox import Outbox, OutboxError
from .pg_outbox import PgOutbox
from .signing import SIGNERS, sign_headers, verify_v2, verify_v3
from .twilio_signing import twilio_headers, twilio_signature
from .urls import UrlError, checked_addresses, clean_url, is_public_address

__all__ = ['fetch_document', 'FetchResult', 'FetchError', 'Outbox', 'OutboxError', 'PgOutbox',
           'sign_headers', 'verify_v2', 'verify_v3', 'SIGNERS', 'twilio_headers', 'twilio_signature', 'clean_url', 'UrlError',
           'checked_addresses', 'is_public_address', 'describe_request_error']
