"""API commands of the simulated switch (`api`/`bgapi`): `CORE_APIS`, name -> `handler(sim, args) -> str`.

* uuid_commands: uuid_kill, uuid_break, uuid_exists, uuid_getvar, uuid_setvar, uuid_setvar_multi,
  uuid_answer, uuid_pre_answer, uuid_send_dtmf, uuid_transfer, uuid_record, uuid_broadcast;
* calls: originate, and the sim-only helpers (prefixed `sim_`) `sim_call <json>` (place a scripted
  call, `+OK <uuid>`) and `sim_dtmf <uuid> <digits>` (the caller presses keys);
* switch_sim.callees: `sim_callee <json>` (script the callee a bridge's sofia/user leg reaches);
* system: show channels [as json], status, version, hupall, sched_api, sched_hangup, fsctl
  pause|resume|pause_check.
uuid_audio_fork is registered by switch_sim.audio_fork.
"""
from ..callees import api_sim_callee
from .calls import api_originate, api_sim_call, api_sim_dtmf
from .system import api_fsctl, api_hupall, api_sched_api, api_sched_hangup, api_show, api_status, api_version
from .uuid_commands import (api_uuid_answer, api_uuid_break, api_uuid_broadcast, api_uuid_exists,
                            api_uuid_getvar, api_uuid_kill, api_uuid_pre_answer, api_uuid_record,
                            api_uuid_send_dtmf, api_uuid_setvar, api_uuid_setvar_multi,
                            api_uuid_transfer)

CORE_APIS = {
    'uuid_kill': api_uuid_kill, 'uuid_break': api_uuid_break, 'uuid_exists': api_uuid_exists,
    'uuid_getvar': api_uuid_getvar, 'uuid_setvar': api_uuid_setvar, 'uuid_setvar_multi': api_uuid_setvar_multi,
    'uuid_answer': api_uuid_answer, 'uuid_pre_answer': api_uuid_pre_answer,
    'uuid_send_dtmf': api_uuid_send_dtmf, 'uuid_transfer': api_uuid_transfer, 'uuid_record': api_uuid_record,
    'uuid_broadcast': api_uuid_broadcast, 'originate': api_originate, 'show': api_show,
    'status': api_status, 'version': api_version, 'hupall': api_hupall, 'sched_api': api_sched_api,
    'sched_hangup': api_sched_hangup, 'sim_call': api_sim_call, 'sim_dtmf': api_sim_dtmf,
    'sim_callee': api_sim_callee, 'fsctl': api_fsctl,
}
from .conference import api_conference  # noqa: E402  (mod_conference: switch_sim/conference.py)
CORE_APIS['conference'] = api_conference
from .displace import api_uuid_displace  # noqa: E402  (switch_sim/apis/displace.py)
CORE_APIS['uuid_displace'] = api_uuid_displace
