"""esl_app: the ESL layer (FreeSWITCH event socket on top of greenswitch), the per-call
CallSession, the outbound socket server, the inbound control connection and the configuration.
Other packages import only what is listed here (docs/internals.md). It runs on gevent, and does
not patch the standard library itself: the entry point does (callfork/cli.py), as the test
configuration does.
"""
from .app_args import escape_app_arg
from .config import Config, NumberConfig, load_config
from .control import ControlConnection
from .errors import CallGone, ConfigError, ESLError, ESLTimeout
from .events import ESLEvent, ESLParser
from .leg_events import LEG_VARIABLE, LegEvents
from .outbound import OutboundESLServer
from .session import CallSession

__all__ = ['ESLEvent', 'ESLParser', 'CallSession', 'OutboundESLServer', 'ControlConnection',
           'CallGone', 'ESLTimeout', 'ESLError', 'load_config', 'Config', 'NumberConfig', 'ConfigError',
           'escape_app_arg', 'LegEvents', 'LEG_VARIABLE']
