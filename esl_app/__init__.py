"""esl_app: the ESL layer (FreeSWITCH event socket on top of greenswitch), the per-call
CallSession, the outbound socket server, the inbound control connection and the configuration.
Other packages import only what is listed here (docs/internals.md).

The service is gevent throughout, so importing it patches the standard library first: the
`callfork` console script imports this package before esl_app.cli runs, and greenswitch, requests,
sqlite3 users and threading must all see the patched modules.
"""
from gevent import monkey

monkey.patch_all()

from .config import Config, load_config  # noqa: E402
from .control import ControlConnection
from .errors import CallGone, ConfigError, ESLError, ESLTimeout
from .events import ESLEvent, ESLParser
from .outbound import OutboundESLServer
from .session import CallSession, escape_app_arg

__all__ = ['ESLEvent', 'ESLParser', 'CallSession', 'OutboundESLServer', 'ControlConnection',
           'CallGone', 'ESLTimeout', 'ESLError', 'load_config', 'Config', 'ConfigError',
           'escape_app_arg']
