"""`StreamSpec`: everything one stream needs to know (ids, app URL, dialect, track, codec,
direction, handshake headers, flavour, limits), validated in one place."""
from __future__ import annotations

from dataclasses import dataclass, field

from .command import mix_for_track

__all__ = ["StreamSpec"]


@dataclass
class StreamSpec:
    stream_id: str
    call_uuid: str
    url: str
    dialect: str = "vobiz"                 # 'vobiz' | 'twilio'
    track: str = "inbound"                 # 'inbound' | 'outbound' | 'both'
    encoding: str = "l16"                  # 'l16' | 'mulaw' (what the app receives and, for twilio, sends)
    sample_rate: int = 8000                # 8000 | 16000 | 24000 (mulaw: 8000)
    bidirectional: bool = False
    headers: list = field(default_factory=list)          # extra handshake headers "Name: value"
    custom_parameters: dict = field(default_factory=dict)  # twilio start.customParameters
    extra_headers: dict = field(default_factory=dict)      # vobiz extraHeaders
    extra_headers_mode: str = "vobiz"      # 'vobiz' ("{}") | 'plivo' (k=v;k2=v2)
    l16_byte_order: str = "le"             # 'le' | 'be' (app side, both directions)
    flavor: str = "jambonz"                # mod_audio_fork build: 'jambonz' | 'drachtio'
    account_id: str = ""
    app_stream_id: str = ""                # twilio: the streamSid/callSid the app sees (a TwiML stream: its
    app_call_id: str = ""                  # MZ/CA sids); empty: stream_id and call_uuid (SWML)
    connect_timeout: float = 5.0           # app connect, and module connect after the fork command
    app_queue_messages: int = 500          # bounded send queue to the app (~5 s of 2-track media)
    app_sndbuf: int | None = 262144        # SO_SNDBUF of the app socket: bounds what a stalled app
                                           # hides in the kernel before the queue (and `degraded`) sees it
    max_playout_seconds: float = 60.0
    send_timeout: float = 10.0             # one send to the app
    api_timeout: float = 10.0              # one uuid_audio_fork command
    keepalive_seconds: float = 20.0        # WebSocket ping to the app after this long idle
    media_dir: str | None = None           # drachtio playAudio fallback: where the WAV files go
                                           # (FreeSWITCH must read them; default: the temp dir)
    resolve: object = None                 # (host, port) -> getaddrinfo tuples the app connection may
                                           # dial (ValueError: refused); None: gevent's getaddrinfo

    def validate(self) -> None:
        if not self.stream_id or not all(c.isalnum() or c in "-_." for c in self.stream_id):
            raise ValueError(f"bad stream_id {self.stream_id!r} ([A-Za-z0-9._-])")
        if self.dialect not in ("vobiz", "twilio"):
            raise ValueError(f"bad dialect {self.dialect!r}")
        mix_for_track(self.track)
        if self.encoding == "mulaw":
            if self.sample_rate != 8000:
                raise ValueError("mulaw streams are 8000 Hz")
        elif self.encoding == "l16":
            if self.sample_rate not in (8000, 16000, 24000):
                raise ValueError(f"bad L16 sample rate {self.sample_rate}")
        else:
            raise ValueError(f"bad encoding {self.encoding!r}")
        if self.l16_byte_order not in ("le", "be"):
            raise ValueError(f"bad l16_byte_order {self.l16_byte_order!r}")
        if self.flavor not in ("jambonz", "drachtio"):
            raise ValueError(f"bad flavor {self.flavor!r}")
        if self.extra_headers_mode not in ("vobiz", "plivo"):
            raise ValueError(f"bad extra_headers_mode {self.extra_headers_mode!r}")
        if self.keepalive_seconds <= 0 or self.connect_timeout <= 0 or self.app_queue_messages <= 0:
            raise ValueError("keepalive_seconds, connect_timeout and app_queue_messages must be positive")
        if not self.url.lower().startswith(("ws://", "wss://")):
            raise ValueError(f"app url must be ws:// or wss://: {self.url!r}")

    @property
    def fork_rate(self) -> int:
        """The rate asked of mod_audio_fork: the app's rate for 8k/16k; 16k for 24k (we upsample)."""
        return 8000 if self.sample_rate == 8000 else 16000
