"""The REST API's live-call controls (issue 13, item 4), under `/api/v1/Account/<auth_id>/Call/<uuid>/`:

  Play/     POST play audio over the call (urls: comma-separated http(s) URLs of WAV/MP3; legs
            aleg|bleg|both, default aleg; length s; loop; mix, default true) → 202 "play started";
            DELETE stop it → 204
  Speak/    POST speak text (text; voice WOMAN|MAN; language; legs; loop; mix) → 202 "speak started";
            DELETE stop it → 204
  DTMF/     POST send digits (digits: 0-9 * # and w/W pauses; leg aleg|bleg|both) → 202 "digits sent"
  Record/   POST record the call (time_limit s, default 60; file_format mp3|wav, default mp3;
            record_channel_type mono|stereo, default mono; callback_url, callback_method GET|POST;
            transcription is not supported: accepted, ignored, said in `note`) → 202
            {api_id, message "recording started", recording_id, url}; DELETE stop all, or the one
            whose `URL` (Vobiz's field; `url` too) the body names → 204

Field names, defaults and answers are Vobiz's (https://docs.vobiz.ai/call/play-audio,
https://docs.vobiz.ai/call/dtmf/send-digits, https://docs.vobiz.ai/call/record-calls/start-recording,
.../stop-recording, .../speak-text/stop-speak) and Plivo's where Vobiz says nothing
(https://www.plivo.com/docs/voice/api/call/play-audio-on-calls/play-audio-on-a-call/). Errors are
the API's JSON `{"api_id", "error"}`: 404 for a call that is not live (unknown or ended) or not
answered yet (Vobiz: "the call must be in-progress"), 400 for bad
input (a bad URL or one that is not audio, bad digits, a bad legs value, no text, `legs=bleg|both`
on a call that is not bridged), 503 for Speak to the caller of a bridged call while this node's drain
keeps FreeSWITCH paused (its speech needs a helper loopback channel). What each control does on
FreeSWITCH is callfork/live_controls.py.
Handlers only validate and ask `service.live`; they never touch the call themselves.
"""
from __future__ import annotations

import logging
import re

from flask import jsonify

from webhooks import UrlError, clean_url

from .api_objects import ApiError, api_id, callback_target, read_body, truthy
from .live_controls import LEGS, CallNotLive, CannotRenderNow, ControlFailed, NoBLeg, NotInProgress

log = logging.getLogger("callfork.api")

DIGITS = re.compile(r"[0-9*#wW]+")
VOICES = ("WOMAN", "MAN")
MAX_TEXT = 3000            # Vobiz: "max 3000 characters"
NOT_LIVE = "call not found or already ended"


def register(app, service, check_account) -> None:
    """Add the live-call routes to `app` (authenticated with create_app's `check_account`)."""
    base = "/api/v1/Account/<account>/Call/<uuid>"
    allow_private = service.config.server.allow_private_urls
    live = service.live

    def ask(fn, *args, **kwargs):
        """Run a LiveControls method, its typed errors answered as the API answers them."""
        try:
            return fn(*args, **kwargs)
        except NotInProgress:
            raise ApiError(404, "call not in progress: it is not answered yet") from None
        except CallNotLive:
            raise ApiError(404, NOT_LIVE) from None
        except NoBLeg as exc:
            raise ApiError(400, str(exc)) from None
        except ControlFailed as exc:
            log.error("call %s: %s", kwargs.get("uuid") or (args[0] if args else "?"), exc)
            raise ApiError(500, str(exc)) from None
        except CannotRenderNow as exc:
            log.warning("call %s: %s", kwargs.get("uuid") or (args[0] if args else "?"), exc)
            raise ApiError(503, str(exc)) from None

    def legs_of(body: dict, *names: str) -> str:
        value = next((body[n] for n in names if body.get(n) not in (None, "")), "aleg")
        value = str(value).strip().lower()
        if value not in LEGS:
            raise ApiError(400, f"{names[0]} must be one of {', '.join(LEGS)}; got {value!r}")
        return value

    def flag(body: dict, name: str, default: bool) -> bool:
        value = body.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool) or str(value).strip().lower() in ("true", "false", "1", "0", "yes", "no"):
            return truthy(value)
        raise ApiError(400, f"{name} must be true or false; got {value!r}")

    def whole(body: dict, name: str, default: int, minimum: int = 1) -> int:
        value = body.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)
        except (TypeError, ValueError, OverflowError):
            raise ApiError(400, f"{name} must be an integer; got {value!r}") from None
        if number < minimum or number > 86400:
            raise ApiError(400, f"{name} must be between {minimum} and 86400; got {number}")
        return number

    # -- Play ------------------------------------------------------------------------------------
    @app.post(base + "/Play/")
    def play(account: str, uuid: str):
        check_account(account)
        ask(live.live_call, uuid)
        body = read_body()
        raw = body.get("urls")
        urls = raw if isinstance(raw, list) else str(raw or "").split(",")
        urls = [str(u).strip() for u in urls if str(u).strip()]
        if not urls:
            raise ApiError(400, "urls is required: one or more comma-separated http(s) URLs of WAV or MP3 files")
        legs = legs_of(body, "legs")
        length = whole(body, "length", 0)
        loop, mix = flag(body, "loop", False), flag(body, "mix", True)
        files = []
        for url in urls:
            try:
                clean_url(url, allow_private=allow_private)
                files.append(service.media.local_file(url))
            except UrlError as exc:
                raise ApiError(400, f"bad URL {url}: {exc}") from None
            except Exception as exc:   # callfork.media_cache.MediaError: unreachable, not audio, too large
                raise ApiError(400, f"cannot play {url}: {exc}") from None
        ask(live.play, uuid, files, legs, length, loop, mix)
        return jsonify({"api_id": api_id(), "message": "play started"}), 202

    @app.delete(base + "/Play/")
    def stop_play(account: str, uuid: str):
        check_account(account)
        ask(live.stop_play, uuid)
        return "", 204

    # -- Speak -----------------------------------------------------------------------------------
    @app.post(base + "/Speak/")
    def speak(account: str, uuid: str):
        check_account(account)
        ask(live.live_call, uuid)
        body = read_body()
        text = re.sub(r"\s+", " ", str(body.get("text") or "")).strip()
        if not text:
            raise ApiError(400, "text is required")
        if len(text) > MAX_TEXT:
            raise ApiError(400, f"text is longer than {MAX_TEXT} characters")
        voice = str(body.get("voice") or "WOMAN").strip()
        if voice.upper() in VOICES:
            voice = voice.upper()
        elif not re.fullmatch(r"[A-Za-z]+\.[A-Za-z0-9_\-]+", voice):
            raise ApiError(400, f"voice must be WOMAN, MAN or a provider voice such as Polly.Amy; got {voice!r}")
        language = str(body.get("language") or "en-US").strip()
        if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", language):
            raise ApiError(400, f"language must be a language tag such as en-US; got {language!r}")
        legs = legs_of(body, "legs")
        loop = flag(body, "loop", False)
        mix = flag(body, "mix", True)   # applied on a bridged call only (live_controls.py)
        ask(live.speak, uuid, text, voice, language, legs, loop, mix)
        return jsonify({"api_id": api_id(), "message": "speak started"}), 202

    @app.delete(base + "/Speak/")
    def stop_speak(account: str, uuid: str):
        check_account(account)
        ask(live.stop_speak, uuid)
        return "", 204

    # -- DTMF ------------------------------------------------------------------------------------
    @app.post(base + "/DTMF/")
    def send_dtmf(account: str, uuid: str):
        check_account(account)
        ask(live.live_call, uuid)
        body = read_body()
        digits = str(body.get("digits") or "").strip()
        if not digits:
            raise ApiError(400, "digits is required")
        if not DIGITS.fullmatch(digits):
            raise ApiError(400, f"digits may only hold 0-9, *, # and the pauses w (0.5 s) and W (1 s); got {digits!r}")
        leg = legs_of(body, "leg", "legs")
        ask(live.send_dtmf, uuid, digits, leg)
        return jsonify({"api_id": api_id(), "message": "digits sent"}), 202

    # -- Record ----------------------------------------------------------------------------------
    @app.post(base + "/Record/")
    def start_record(account: str, uuid: str):
        check_account(account)
        ask(live.live_call, uuid)
        body = read_body()
        time_limit = whole(body, "time_limit", 60)
        file_format = str(body.get("file_format") or "mp3").strip().lower()
        if file_format not in ("mp3", "wav"):
            raise ApiError(400, f"file_format must be mp3 or wav; got {file_format!r}")
        channels = str(body.get("record_channel_type") or "mono").strip().lower()
        if channels not in ("mono", "stereo"):
            raise ApiError(400, f"record_channel_type must be mono or stereo; got {channels!r}")
        callback_url, method = callback_target(body, allow_private)
        request_id = api_id()
        recording = ask(live.start_record, uuid, time_limit=time_limit, file_format=file_format,
                        stereo=channels == "stereo", callback_url=callback_url, callback_method=method,
                        api_id=request_id)
        answer = {"api_id": request_id, "message": "recording started", "recording_id": recording.rec.id,
                  "url": recording.url}
        if body.get("transcription_type") or body.get("transcription_url"):
            answer["note"] = ("transcription is not supported by callfork: the call is recorded, "
                              "no transcription will be sent")
            log.warning("call %s: REST Record asked for a transcription; callfork records without one", uuid)
        return jsonify(answer), 202

    @app.delete(base + "/Record/")
    def stop_record(account: str, uuid: str):
        check_account(account)
        ask(live.live_call, uuid)
        body = read_body()
        url = str(body.get("URL") or body.get("url") or "").strip() or None
        if ask(live.stop_record, uuid, url) == 0 and url is not None:
            raise ApiError(404, f"no recording in progress on this call has URL {url}")
        return "", 204
