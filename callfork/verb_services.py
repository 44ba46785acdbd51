"""What a call may ask of the service: the `services` object behind `verbs.CallContext`.

It binds one call to the shared parts of the running service: the document fetcher (signed, with
timeouts and the fallback URL), the durable outbox, the call store, the media cache, the stream
relay and the configuration of the number that was dialled.
"""
from __future__ import annotations

from webhooks import UrlError, checked_addresses, clean_url, fetch_document


class VerbServices:
    def __init__(self, service, number):
        self._service = service
        self.config = service.config
        self.number = number
        self.store = service.store
        self.recordings_dir = service.recordings_dir
        self.public_url = service.config.server.public_url.rstrip("/")
        self.auth_id = service.config.server.auth_id
        self.relay = service.relay
        # Twilio apps get Twilio's signature on every fetch and webhook of their calls
        self.signer = getattr(number, "api", None) or "vobiz"

    @property
    def auth_token(self) -> str:
        return self._service.auth_token

    def fetch(self, url: str, method: str, params: dict):
        """One signed document fetch with the configured timeouts (the interpreter decides about
        the fallback URL, which also covers documents that cannot be parsed)."""
        wh = self.config.webhooks
        return fetch_document(url, method, params, auth_token=self.auth_token,
                              connect_timeout=wh.connect_timeout_s, read_timeout=wh.read_timeout_s,
                              v3_mode=wh.v3_mode, allow_private=self.config.server.allow_private_urls,
                              signer=self.signer)

    def check_url(self, url: str, schemes=("ws", "wss")) -> str:
        """A URL the app gave (e.g. a stream's WebSocket): fragment stripped, scheme checked, and
        private/loopback targets refused unless [server] allow_private_urls. Raises ValueError."""
        try:
            return clean_url(url, allow_private=self.config.server.allow_private_urls, schemes=schemes)
        except UrlError as exc:
            raise ValueError(str(exc)) from None

    def connect_addresses(self, host: str, port: int) -> list:
        """Where a connection the app asked for (a stream's WebSocket) may go: `host` resolved once,
        the getaddrinfo tuples to dial; with [server] allow_private_urls = false every address must
        be public (ValueError otherwise). Connecting to these, not to a new lookup's answer, keeps a
        DNS server from answering the check with a public address and the connect with a private one."""
        return checked_addresses(host, port, allow_private=self.config.server.allow_private_urls)

    def post(self, call_uuid: str, url: str, method: str, params: dict, event: str, encoding: str = "form") -> None:
        self._service.outbox.enqueue(call_uuid, url, method, params, encoding=encoding, event=event,
                                     signer=self.signer)

    def record_event(self, call_uuid: str, kind: str, detail: dict) -> None:
        """A timeline entry: stored with the call, and published to `callfork tail` followers."""
        self._service.record_event(call_uuid, kind, detail)

    def loopback_refusal(self) -> str:
        """Why a loopback channel cannot be made now ('' when it can): this node's drain has paused
        FreeSWITCH for inbound channels (callfork/drain.py)."""
        return self._service.drain.loopback_refusal()

    def watch_legs(self, leg_uuids):
        """A queue of the events of the legs a call is about to dial (esl_app.LegEvents)."""
        return self._service.leg_events.watch(leg_uuids)

    def unwatch_legs(self, leg_uuids) -> None:
        self._service.leg_events.unwatch(leg_uuids)

    @property
    def room_recordings(self):
        """The conference rooms' recordings (callfork/room_recordings.py): a <Conference record>
        recording belongs to its room."""
        from .room_recordings import RoomRecordings
        return RoomRecordings.of(self._service)

    def media_file(self, url: str):
        return self._service.media.local_file(url)

