"""switch_sim: a FreeSWITCH simulator for tests and demos. The service never imports it; only the
`callfork sim` and `callfork demo` commands do.

Exports `Simulator`, `CallScript`, `SimCall`, and `serve_main` / `call_main` (the `callfork sim
serve|call` commands) (docs/internals.md). Modules: urlenc (URL encoding), events
(serialization), listener/esl_server/outbound (event socket, both modes), channel (state, media clock,
hangup path), apps/apis (dialplan apps and API commands), media (audio sources), caller (scripted
caller), cli (`callfork sim serve|call`), audio_fork (mod_audio_fork emulation, separate owner).
"""
from .caller import CallScript, SimCall
from .cli import call_main, serve_main
from .simulator import Simulator

__all__ = ['Simulator', 'CallScript', 'SimCall', 'serve_main', 'call_main']
