"""Dialplan applications of the simulated switch (the ones a Vobiz/SWML engine uses), one module
per group; importing this package registers them all in `APPS`.

Each app is `func(channel, data)` running in the channel's session greenlet; it paces itself on the
channel's 20 ms media clock (`channel.wait_frame()`), so DTMF, uuid_break (CF_BREAK) and hangup are
seen within one frame, as in FreeSWITCH's play/record loops; on each frame the media loops also
service queued messages (`channel.service_messages()`: nested execution unless event-locked).
Results go into channel variables and `current_application_response` (the Application-Response of
CHANNEL_EXECUTE_COMPLETE). What an app writes while it runs (switch_sim/channel_media.py): playback/speak
their audio; sleep and digit collection silence only with `send_silence_when_idle`; record low
noise (record_waste_resources); the others nothing.

* registry: the `APPS` table, `@app`, `AppError`;
* control: answer, pre_answer, ring_ready, set, export, unset, multiset, log, hangup, park,
  sched_hangup;
* playback: playback, endless_playback, speak, send_dtmf, sleep;
* record: record, wait_for_silence (the apps that read the caller's frames themselves);
* record_session: record_session, stop_record_session (a media bug; also used by uuid_record);
* digits: play_and_get_digits, read;
* recfile: the files the recording apps write;
* bridge: bridge (originate B-legs over switch_sim.dialstring / bleg / loopback / callees, then
  bridged media both ways);
* signals: respond, gentones (what a callee answers with).
(`socket` is registered by switch_sim.outbound.)
"""
from . import bridge, control, digits, playback, record, record_session, signals  # noqa: F401  (register the apps)
from . import conference  # noqa: F401  (mod_conference's app: switch_sim/conference.py)
from .registry import APPS, AppError, app

__all__ = ['APPS', 'AppError', 'app']
