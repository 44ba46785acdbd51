"""audio_fork: mod_audio_fork streams relayed to the app's WebSocket.

Owns `uuid_audio_fork` command building (`command`), the relay WS server (`relay`, `wsserver`,
`wsframes`), one stream's session (`session`, with `spec`; its parts: the app connection and
sender, the upstream and downstream conversions, and the module or file playout), the app-side
dialects (`dialects.vobiz`, `dialects.twilio`), codecs, framing and the playout queue. It never imports esl_app, verbs, webhooks or switch_sim:
the ESL `api` call and the event sink are passed in as callables.
"""
from . import codecs
from .command import build_fork_command, parse_reply
from .errors import (AudioForkError, ForkCommandError, NotSupportedByFlavour, ProtocolError,
                     StreamStartError)
from .relay import Relay
from .wsserver import ServerWebSocket, WebSocketClosed
from .session import StreamSession, StreamSpec

__all__ = ["Relay", "StreamSpec", "StreamSession", "build_fork_command", "parse_reply", "codecs",
           "AudioForkError", "ForkCommandError", "NotSupportedByFlavour", "ProtocolError",
           "StreamStartError", "ServerWebSocket", "WebSocketClosed"]
