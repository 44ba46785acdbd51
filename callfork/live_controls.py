"""What the REST API's live-call controls do on FreeSWITCH: `LiveControls` (the service's `live`).

Play, Speak, DTMF and Record on a live call (callfork/live_call_api.py answers the HTTP side). None
of them changes what the call's own greenlet runs: each is a FreeSWITCH API command on the control
connection, acting on the channel beside the document's verbs, which go on as they would (Vobiz
plays over the call; the XML keeps running). What was started is kept here per call, so that it can
be stopped (the paths of a Play, the speeches); it is forgotten once the call has left the service.
Recordings are found among the call's own (`ctx.recordings`), so nothing here keeps a call alive.

* Play: the URLs are downloaded through the media cache, then `uuid_displace <uuid> start
  file_string://a!b <length> <flags>`: a media bug on what the channel writes, so it is heard
  whatever app runs (a prompt, a stream, idle). `mix` true adds it to what the caller hears (flag
  `m`); false replaces it and mutes what the caller says to the other side for as long as it plays
  (switch_ivr_async.c write_displace_callback), Plivo's documented `mix=false`. `loop` is flag `l`,
  `length` the bug's time limit. A new Play stops the one this API started before (as
  plivoframework's play_on_call does). `legs=bleg` displaces what the A-leg *reads* (flag `r`),
  which is what a bridged B-leg hears; its path gets a leading `silence_stream://1` so that the
  two bugs of `legs=both` have different names (FreeSWITCH keeps one displace per path).
  FreeSWITCH runs a displace only on frames the channel writes: callfork makes the idle park
  loop write silence (verbs/idle_audio.py), so a Play is heard between verbs too.
* Speak: mod_flite is a speech interface, not a file format, so it cannot be displaced as it is.
  On a call that is not bridged it is `uuid_broadcast <uuid> speak::flite|<voice>|<text> aleg`, an
  app queued on the channel. It replaces what the caller hears while it speaks (`mix` cannot
  apply) and, as every app callfork runs is event-locked, it starts when the app running now ends:
  at once while the call idles (a stream, a <Wait>, between verbs), after the current prompt
  otherwise; the document's next verb then waits for it (docs/decisions.md). `loop` speaks it
  again each time it completes; DELETE breaks it if it is the app running, or as soon as it starts.
  On a bridged call (a B-leg exists, `bridged_leg`) a broadcast to the A-leg would wait for the
  end of the <Dial>'s event-locked bridge (tests/fixtures/fs-captures/bridge-broadcast.json), so
  for `legs=aleg|both` the text is rendered to a WAV by a helper channel
  (callfork/speech_render.py; ready as late as the speech is long) and displaced as Play does it:
  on what the A-leg writes (the caller) and, for `both`, on what it reads (`r`: the callee; a
  second name of the file, a hard link), with `m` per `mix` and `l` per `loop`; DELETE stops the
  displaces (or drops a speech still being rendered). `legs=bleg` stays a broadcast to the B-leg:
  it runs at once, inside the bridge, which FreeSWITCH suspends both ways for the speech's time:
  the callee hears the speech alone, the caller silence, then the two hear each other again
  (bridge-broadcast.json).
* DTMF: `uuid_send_dtmf <uuid> <digits>` (`w`/`W`: 0.5 s / 1 s pauses) on the A-leg, the B-leg or both.
* Record: `verbs.ApiRecording` (`uuid_record`), kept with the call's recordings.

The bridged leg is found by one function, `bridged_leg` (the A-leg's `bridge_uuid`, else
`signal_bond`, that still exists); with none, `legs=bleg|both` is refused with NoBLeg.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import gevent

from fsargs import quote_api_arg
from verbs import ApiRecording, RecordingNotStarted

from .drain import InboundPaused
from .speech_render import RenderedSpeech, SpeechFailed, speakable

log = logging.getLogger("callfork.live")

LEGS = ("aleg", "bleg", "both")


class CallNotLive(LookupError):
    """No live call has that UUID (never was, or already ended)."""


class NotInProgress(CallNotLive):
    """The call is live but not answered yet (ringing, early media): Vobiz's controls need an
    in-progress call, and FreeSWITCH's displace would answer it (pre_answer) on its own."""


class NoBLeg(ValueError):
    """`legs`/`leg` asked for the B-leg of a call that is not bridged."""


class ControlFailed(RuntimeError):
    """FreeSWITCH refused a command (its reply is in the message)."""


class CannotRenderNow(RuntimeError):
    """Speech to a bridged caller is rendered by a helper loopback channel, which cannot be made
    while this node's drain keeps FreeSWITCH paused for inbound channels (callfork/drain.py)."""


@dataclass
class _Speech:
    uuid: str                   # the channel it was broadcast on
    arg: str                    # speak's argument: flite|voice|text
    legs: str
    loop: bool
    running: bool = False
    stopped: bool = False
    mix: bool = True
    rendered: RenderedSpeech | None = None   # a bridged call's speech, displaced once rendered
    displaces: list = field(default_factory=list)   # (channel uuid, path) it displaces


@dataclass
class _CallControls:
    displaces: list = field(default_factory=list)     # (channel uuid, path) of the running Play
    speeches: list = field(default_factory=list)      # _Speech
    speech_events: bool = False                      # the session's execute events are hooked


class LiveControls:
    def __init__(self, service):
        self.service = service
        self._calls: dict[str, _CallControls] = {}

    # -- lookups ---------------------------------------------------------------------------------
    def live_call(self, uuid: str):
        """The call's context; raises CallNotLive (NotInProgress when it is not answered yet)."""
        self._prune()
        ctx = self.service.calls.get(uuid)
        if ctx is None or ctx.session.gone:
            raise CallNotLive(uuid)
        if not ctx.answered:
            raise NotInProgress(uuid)
        return ctx

    def _state(self, uuid: str) -> _CallControls:
        return self._calls.setdefault(uuid, _CallControls())

    def _prune(self) -> None:
        for uuid in [u for u in self._calls if u not in self.service.calls]:
            del self._calls[uuid]

    def _api(self, command: str) -> str:
        try:
            return self.service.control.api(command)
        except Exception as exc:   # the control connection is down or timed out
            raise ControlFailed(f"FreeSWITCH did not answer {command.split(' ', 1)[0]}: {exc}") from None

    def bridged_leg(self, uuid: str) -> str | None:
        """The UUID of the leg bridged to call `uuid`, or None when it is not bridged."""
        for variable in ("bridge_uuid", "signal_bond"):
            other = self._api(f"uuid_getvar {uuid} {variable}").strip()
            if other and other != "_undef_" and not other.startswith("-ERR") \
                    and self._api(f"uuid_exists {other}").strip() == "true":
                return other
        return None

    def _need_b_leg(self, uuid: str, legs: str) -> str | None:
        if legs == "aleg":
            return None
        other = self.bridged_leg(uuid)
        if other is None:
            raise NoBLeg("no B-leg: the call is not bridged")
        return other

    # -- Play ------------------------------------------------------------------------------------
    def play(self, uuid: str, files: list, legs: str, length: int, loop: bool, mix: bool) -> None:
        """Play local files (already downloaded) over the call; raises CallNotLive, NoBLeg, ControlFailed."""
        ctx = self.live_call(uuid)
        self._need_b_leg(uuid, legs)
        state = self._state(uuid)
        self._stop_displaces(state)
        joined = "!".join(str(f) for f in files)
        flags = ("l" if loop else "") + ("m" if mix else "")
        commands = []
        if legs in ("aleg", "both"):
            commands.append(f"file_string://{joined}")
        if legs in ("bleg", "both"):
            commands.append(f"file_string://silence_stream://1!{joined}")
        for i, path in enumerate(commands):
            leg_flags = flags + ("r" if path.startswith("file_string://silence_stream") else "")
            reply = self._api(f"uuid_displace {uuid} start {quote_api_arg(path)} {length}" + (f" {leg_flags}" if leg_flags else ""))
            if not reply.startswith("+OK"):
                self._stop_displaces(state)
                raise ControlFailed(f"FreeSWITCH could not play the audio: {reply.strip()}")
            state.displaces.append((uuid, path))
        ctx.timeline("api_play", {"files": len(files), "legs": legs, "length": length, "loop": loop, "mix": mix})

    def stop_play(self, uuid: str) -> int:
        ctx = self.live_call(uuid)
        count = self._stop_displaces(self._state(uuid))
        ctx.timeline("api_play_stopped", {"count": count})
        return count

    def _stop_displaces(self, state: _CallControls) -> int:
        stopped = 0
        while state.displaces:
            channel, path = state.displaces.pop()
            # -ERR when it already ended (its files played out, its length reached): nothing to stop
            if self._api(f"uuid_displace {channel} stop {quote_api_arg(path)}").startswith("+OK"):
                stopped += 1
        return stopped

    # -- Speak -----------------------------------------------------------------------------------
    def speak(self, uuid: str, text: str, voice: str, language: str, legs: str, loop: bool,
              mix: bool = True) -> None:
        ctx = self.live_call(uuid)
        other = self.bridged_leg(uuid)
        if other is None and legs != "aleg":
            raise NoBLeg("no B-leg: the call is not bridged")
        flite_voice = ctx.tts_voice(voice, language)
        state = self._state(uuid)
        speech = _Speech(uuid, f"flite|{flite_voice}|{text}", legs, loop, mix=mix)
        if other is not None and legs != "bleg":
            words = speakable(text)
            try:
                self.service.drain.check_loopback()
            except InboundPaused as exc:
                raise CannotRenderNow(f"speech to a bridged caller cannot be rendered now: {exc}; "
                                      "speak to legs=bleg, or after the bridge") from None
            try:
                speech.rendered = RenderedSpeech(self._api, self.service.recordings_dir, words, flite_voice)
            except SpeechFailed as exc:
                raise ControlFailed(f"FreeSWITCH could not speak: {exc}") from None
            state.speeches.append(speech)
            gevent.spawn(self._displace_when_rendered, ctx, state, speech)
        else:
            if legs != "bleg":
                self._hook_speech_events(ctx, state)
            state.speeches.append(speech)
            try:
                self._broadcast(speech)
            except ControlFailed:
                state.speeches.remove(speech)
                raise
        ctx.timeline("api_speak", {"legs": legs, "loop": loop, "voice": flite_voice, "chars": len(text),
                                   "rendered": speech.rendered is not None})

    def _displace_when_rendered(self, ctx, state: _CallControls, speech: _Speech) -> None:
        """A bridged call's speech: once its WAV is complete, displace it on the A-leg as Play does."""
        rendered = speech.rendered
        try:
            if not rendered.wait(lambda: speech.stopped or ctx.session.gone):
                if not speech.stopped and not ctx.session.gone:
                    log.error("call %s: the REST Speak was not rendered in time", speech.uuid)
                return
            flags = ("l" if speech.loop else "") + ("m" if speech.mix else "")
            # the callee's part (`r`) under a second name of the file: FreeSWITCH keeps one displace
            # per path, and file_string:// (Play's way to a second path) opens its later files only
            # when it reaches them, after the WAV has been removed
            paths = [(str(rendered.path), "")]
            if speech.legs == "both":
                paths.append((str(rendered.another_name()), "r"))
            for path, side in paths:
                if speech.stopped:
                    break
                leg_flags = flags + side
                reply = self._api(f"uuid_displace {speech.uuid} start {quote_api_arg(path)} 0"
                                  + (f" {leg_flags}" if leg_flags else ""))
                if not reply.startswith("+OK"):
                    log.error("call %s: the REST Speak could not be played: %s", speech.uuid, reply.strip())
                    break
                speech.displaces.append((speech.uuid, path))
            if speech.stopped:     # a DELETE that came while a displace was starting
                self._stop_speech_displaces(speech)
            elif speech.displaces:
                ctx.timeline("api_speak_playing", {"legs": speech.legs})
            if speech.loop:
                # FreeSWITCH seeks the open file to loop it; the simulator opens it again: keep it
                # until the speech is stopped or the call ends
                while not speech.stopped and not ctx.session.gone:
                    gevent.sleep(1.0)
        except ControlFailed as exc:
            log.info("call %s: REST Speak: %s", speech.uuid, exc)
        except Exception:
            log.exception("call %s: REST Speak failed", speech.uuid)
        finally:
            rendered.remove()     # FreeSWITCH plays on from the file it has opened

    def _broadcast(self, speech: _Speech) -> None:
        reply = self._api(f"uuid_broadcast {speech.uuid} {quote_api_arg('speak::' + speech.arg)} {speech.legs}")
        if not reply.startswith("+OK"):
            raise ControlFailed(f"FreeSWITCH could not speak: {reply.strip()}")

    def _hook_speech_events(self, ctx, state: _CallControls) -> None:
        """Once per call: the A-leg's execute events tell when a broadcast speech starts and ends."""
        if state.speech_events:
            return
        state.speech_events = True
        ctx.session.on_event("CHANNEL_EXECUTE", lambda ev: self._speech_event(state, ev, True))
        ctx.session.on_event("CHANNEL_EXECUTE_COMPLETE", lambda ev: self._speech_event(state, ev, False))

    def _speech_event(self, state: _CallControls, event, started: bool) -> None:
        # runs in the ESL dispatch greenlet: never block here
        if event.get("Application") != "speak":
            return
        data = event.get("Application-Data")
        for speech in state.speeches:
            if speech.arg != data or speech.legs == "bleg" or speech.rendered is not None \
                    or speech.running != (not started):
                continue
            speech.running = started
            if started and speech.stopped:
                gevent.spawn(self._api_quietly, f"uuid_break {speech.uuid}")
            elif not started:
                if speech.loop and not speech.stopped:
                    gevent.spawn(self._again, speech)
                elif speech in state.speeches:
                    state.speeches.remove(speech)
            return

    def _again(self, speech: _Speech) -> None:
        try:
            self._broadcast(speech)
        except ControlFailed as exc:
            log.info("call %s: looping Speak ended: %s", speech.uuid, exc)

    def _api_quietly(self, command: str) -> None:
        try:
            self._api(command)
        except ControlFailed as exc:
            log.info("%s", exc)

    def stop_speak(self, uuid: str) -> int:
        ctx = self.live_call(uuid)
        state = self._state(uuid)
        speeches = [s for s in state.speeches if not s.stopped]
        for speech in speeches:
            speech.stopped = True
            if speech.rendered is not None:
                # a speech still being rendered is dropped by _displace_when_rendered
                self._stop_speech_displaces(speech)
                if speech in state.speeches:
                    state.speeches.remove(speech)
            elif speech.running or speech.legs == "bleg":
                # the speech is the app running now (with CF_BROADCAST set, uuid_break stops only it)
                self._api(f"uuid_break {speech.uuid if speech.legs != 'bleg' else self.bridged_leg(uuid) or uuid}")
            # a speech still queued is broken as soon as its CHANNEL_EXECUTE comes (_speech_event)
        ctx.timeline("api_speak_stopped", {"count": len(speeches)})
        return len(speeches)

    def _stop_speech_displaces(self, speech: _Speech) -> None:
        while speech.displaces:
            channel, path = speech.displaces.pop()
            # -ERR when it already played out: nothing to stop
            self._api(f"uuid_displace {channel} stop {quote_api_arg(path)}")

    # -- DTMF ------------------------------------------------------------------------------------
    def send_dtmf(self, uuid: str, digits: str, leg: str) -> None:
        ctx = self.live_call(uuid)
        other = self._need_b_leg(uuid, leg)
        targets = ([uuid] if leg in ("aleg", "both") else []) + ([other] if other else [])
        for target in targets:
            reply = self._api(f"uuid_send_dtmf {target} {digits}")
            if not reply.startswith("+OK"):
                raise ControlFailed(f"FreeSWITCH could not send the digits: {reply.strip()}")
        ctx.timeline("api_dtmf", {"digits": digits, "leg": leg})

    # -- Record ----------------------------------------------------------------------------------
    def start_record(self, uuid: str, *, time_limit: int, file_format: str, stereo: bool, callback_url: str,
                     callback_method: str, api_id: str) -> ApiRecording:
        ctx = self.live_call(uuid)
        recording = ApiRecording(ctx, file_format, time_limit, stereo, callback_url, callback_method, api_id)
        try:
            recording.start(self._api)   # then one of ctx.recordings (nothing here keeps the call)
        except RecordingNotStarted as exc:
            raise ControlFailed(f"FreeSWITCH could not record the call: {exc}") from None
        return recording

    def stop_record(self, uuid: str, url: str | None = None) -> int:
        """Stop every recording this API started on the call, or the one whose URL is `url`;
        returns how many (0 with a `url` that names none: the caller answers 404)."""
        ctx = self.live_call(uuid)
        chosen = [r for r in list(ctx.recordings) if isinstance(r, ApiRecording) and not r.finished
                  and (url is None or r.url == url)]
        for recording in chosen:
            recording.stop(self._api)
        return len(chosen)
