"""switch_sim: a FreeSWITCH simulator for tests and demos (never imported by production code).

Exports `Simulator` and `CallScript` (docs/internals.md). Modules: urlenc (URL encoding), events
(serialization), listener/esl_server/outbound (event socket, both modes), channel (state, media clock,
hangup path), apps/apis (dialplan apps and API commands), media (audio sources), caller (scripted
caller), cli (`callfork sim serve|call`), audio_fork (mod_audio_fork emulation, separate owner).
"""
from .caller import CallScript, SimCall
from .simulator import Simulator

__all__ = ['Simulator', 'CallScript', 'SimCall']
