"""switch_sim: a FreeSWITCH simulator for tests and demos. The service never imports it; only the
`callfork sim` and `callfork demo` commands do.

Exports `Simulator`, `CallScript`, `SimCall`, and `serve_main` / `call_main` (the `callfork sim
serve|call` commands) (docs/internals.md). Modules: urlenc (URL encoding), argsplit
(switch_separate_string), events (serialization), listener/esl_server/outbound (event socket, both
modes), channel (state, events, hangup path) with channel_media (media clock, bugs, DTMF) and
channel_exec (sendmsg messages, app execution, park), causes (hangup causes), cdr (CDR variables),
media_bug (bug buffers), apps/ and apis/ (dialplan apps and API commands, one module per group),
media (audio sources), caller (scripted caller), cli (`callfork sim serve|call`), audio_fork
(mod_audio_fork emulation: fork_command, fork_session, fork_playout, fork_json, fork_ws), and the
`bridge` app's parts: dialstring (the dial string), bleg (B-leg channels, frame links), loopback
(mod_loopback pairs), callees (scripted far ends, the `sim_callee <json>` API), apps/bridge.
"""
from .caller import CallScript, SimCall
from .cli import call_main, serve_main
from .simulator import Simulator

__all__ = ['Simulator', 'CallScript', 'SimCall', 'serve_main', 'call_main']
