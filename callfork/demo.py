"""`callfork demo`: one real call through the whole product, with no FreeSWITCH and no internet.

It starts the built-in FreeSWITCH simulator, the callfork service (outbound ESL server, relay,
HTTP API, outbox) and the sample application (callfork/demo_app.py), places one simulated call
whose caller speaks a WAV, and prints what happened: the call's events, the stream events the app
got, the recording, every webhook delivered, and where the files are.
"""
from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from esl_app import load_config
from .demo_app import SampleApp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def caller_voice(path: Path, seconds: float = 10.0, rate: int = 8000) -> Path:
    """A speech-like test signal: syllables of voiced sound (harmonics with a moving pitch)
    separated by short pauses, so echo and recordings are easy to hear and to check."""
    t = np.arange(int(seconds * rate)) / rate
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    syllables = (np.sin(2 * np.pi * 3.0 * t) > -0.2).astype(float)
    envelope = np.convolve(syllables, np.ones(200) / 200, mode="same")
    audio = (voiced * envelope * 6000).astype(np.int16)
    soundfile.write(str(path), audio, rate, subtype="PCM_16")
    return path


def run_demo(args) -> int:
    from switch_sim import CallScript, Simulator  # the demo is the one place the service meets the simulator

    from .service import Service

    data_dir = Path(tempfile.mkdtemp(prefix="callfork-demo-"))
    ports = {name: free_port() for name in ("esl", "outbound", "http", "relay")}
    sample = SampleApp().start()
    env = {
        "CALLFORK_FREESWITCH_ESL_PORT": str(ports["esl"]),
        "CALLFORK_SERVER_OUTBOUND_LISTEN": f"127.0.0.1:{ports['outbound']}",
        "CALLFORK_SERVER_HTTP_LISTEN": f"127.0.0.1:{ports['http']}",
        "CALLFORK_SERVER_RELAY_LISTEN": f"127.0.0.1:{ports['relay']}",
        "CALLFORK_SERVER_PUBLIC_URL": f"http://127.0.0.1:{ports['http']}",
        "CALLFORK_SERVER_DATA_DIR": str(data_dir),
        "CALLFORK_SERVER_AUTH_TOKEN": "demo-token",
    }
    config_file = data_dir / "callfork.toml"
    config_file.write_text(f'[[numbers]]\nnumber = "*"\nanswer_url = "{sample.answer_url}"\n'
                           f'hangup_url = "{sample.hangup_url}"\n')
    config = load_config(str(config_file), env=env)
    sim = Simulator(esl=("127.0.0.1", ports["esl"]), password=config.freeswitch.esl_password,
                    socket_target=("127.0.0.1", ports["outbound"]), flavor=config.audio_fork.flavor)
    sim.start()
    service = Service(config).start()
    print(f"callfork demo: simulator ESL 127.0.0.1:{ports['esl']}, callfork HTTP "
          f"http://127.0.0.1:{ports['http']}, sample app {sample.base_url}, data in {data_dir}\n", flush=True)
    try:
        if not service.control.wait_connected(10):
            print("callfork demo: the service could not connect to the simulator's event socket")
            return 1
        voice = Path(args.audio) if args.audio else caller_voice(data_dir / "caller.wav")
        heard = data_dir / "heard.wav"
        print(f"placing a call to 1000; the caller speaks {voice}", flush=True)
        call = sim.place_call(CallScript(to="1000", from_="15551230001", audio=str(voice),
                                         hangup_after=60, save_heard=str(heard)))
        summary = call.wait(timeout=90)
        sample.wait_for(lambda: sample.events("Hangup") and sample.events("RecordStop"), timeout=15)
        service.outbox.flush(10)
        files_dir = data_dir if args.keep_data else data_dir.with_name(data_dir.name + "-files")
        _report(summary, sample, service, files_dir)
        ok = (bool(summary.get("answered")) and bool(sample.events("StartStream"))
              and bool(sample.events("Hangup")) and service.outbox.depth() == 0)
        if not ok:
            print("\ncallfork demo: FAILED (the call was not answered, streamed, or its webhooks not delivered)")
        return 0 if ok else 1
    finally:
        service.stop()
        sim.stop()
        sample.stop()
        if not args.keep_data:
            kept = data_dir.with_name(data_dir.name + "-files")
            # keep the files worth listening to, drop the rest (database, media cache)
            kept.mkdir(exist_ok=True)
            for path in list((data_dir / "recordings").glob("*")) + [data_dir / "heard.wav"]:
                if path.exists():
                    shutil.copy2(path, kept / path.name)
            shutil.rmtree(data_dir, ignore_errors=True)
            print(f"\nthe recording and what the caller heard are in {kept}")
        else:
            print(f"\ndata directory kept: {data_dir}")


def _report(summary, sample, service, files_dir) -> None:
    uuid = summary.get("uuid")
    print("\n== the call ==")
    print(f"uuid {uuid}, answered {summary.get('answered')}, hangup cause {summary.get('hangup_cause')}, "
          f"{summary.get('duration_s')} s")
    print("FreeSWITCH events: " + " ".join(summary.get("events", [])))
    print("\n== the stream, as the echo bot saw it ==")
    for event in sample.ws_events:
        if event.get("event") == "start":
            print(f"  start: {event['start']}")
        elif event.get("event") == "closed":
            print(f"  closed by callfork, code {int(event['code']) if event.get('code') is not None else '-'}")
        else:
            print(f"  {event.get('event')}: {event}")
    print("\n== webhooks the sample app received ==")
    for hook in sample.webhooks:
        form = hook["form"]
        print(f"  {hook['path']:<15} Event={form.get('Event', ''):<13} "
              + " ".join(f"{k}={form[k]}" for k in ("StreamID", "Name", "RecordingID", "RecordingEndReason",
                                                    "HangupCauseCode", "HangupCauseName") if form.get(k)))
    print("\n== webhook deliveries (callfork's durable outbox) ==")
    for hook in service.outbox.deliveries(uuid):
        print(f"  {hook['event'] or '':<13} {hook['status']:<9} HTTP {hook['last_status_code']}  "
              f"attempts {hook['attempts']}  {hook['url']}")
    print("\n== recordings ==")
    for rec in service.store.list_recordings(uuid):
        name = Path(rec["path"] or "").name
        print(f"  {rec['recording_id']}: {files_dir / name} ({rec['duration_ms']} ms, {rec['end_reason']})")
    print(f"\nwhat the caller heard: {files_dir / 'heard.wav'}")
    print("\nnext: run it yourself with a FreeSWITCH (see freeswitch/README.md), or on the simulator:\n"
          "  callfork sim serve &            # a FreeSWITCH simulator on 127.0.0.1:8021\n"
          "  callfork serve &                # callfork with the built-in sample app\n"
          "  callfork sim call --to 1000 --audio some.wav --json\n"
          "  callfork calls --all; callfork call <uuid>")
