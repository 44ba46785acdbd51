"""The Conference REST API, under `/api/v1/Account/<auth_id>/Conference/` (Vobiz's paths and bodies,
Plivo's where Vobiz says nothing: https://www.plivo.com/docs/voice/api/conference/):

  GET    Conference/                              {"api_id", "conferences": [room names]}; in a
                                                  cluster every node's rooms, asked of the nodes
                                                  the registry gives rooms to (callfork/
                                                  cluster_lists.py); asked by another node
                                                  (X-Callfork-Forwarded-By), this node's own
  DELETE Conference/                              hang up every room → 204
  GET    Conference/<name>/                       {"api_id", "conference_name", "conference_run_time",
                                                   "conference_member_count", "members": [{"muted",
                                                   "member_id", "deaf", "from", "to", "caller_name",
                                                   "direction", "call_uuid", "join_time"}]}
  DELETE Conference/<name>/                       hang up every member → 204
  DELETE Conference/<name>/Member/<ids>/          hang up the members' calls → 202 {"message": "hangup"}
  POST   Conference/<name>/Member/<ids>/Kick/     out of the room, their documents go on → 202 "kicked"
  POST|DELETE Conference/<name>/Member/<ids>/Mute/   → 202 "muted" | 204
  POST|DELETE Conference/<name>/Member/<ids>/Deaf/   → 202 "deaf" | 204
  POST   Conference/<name>/Member/<ids>/Play/     url → 202 "play queued into conference"
  POST   Conference/<name>/Member/<ids>/Speak/    text; voice WOMAN|MAN (or Polly.*), language: mod_flite's
                                                  voice as for <Speak> → 202 "speak queued into
                                                  conference" (`all`: into the room; ids: those
                                                  members only, once the text is rendered;
                                                  503 while this node's drain keeps FreeSWITCH
                                                  paused: the members' speech needs a loopback
                                                  channel, which it cannot create then)
  POST   Conference/<name>/Record/                file_format wav (callfork's default) | mp3, callback_url,
                                                  callback_method → 202 {"message": "conference
                                                  recording started", "recording_id", "url"}
  DELETE Conference/<name>/Record/                stop the room's recordings, whoever started them → 204

When a recording ends (DELETE, or the room's end) callback_url gets Plivo's fields: api_id (the
start's), record_url, recording_id, conference_name, recording_duration (s),
recording_duration_ms, recording_start_ms, recording_end_ms
(https://www.plivo.com/docs/voice/api/conference/record-conference/start-recording-a-conference/).

`<ids>`: a member id, ids separated by commas, or `all`. The 202 answers carry `member_id` (the list
acted on) and `api_id`. An unknown (or ended) room is 404 "conference not found", a member id the
room does not have 404 "member not found". FreeSWITCH's side is callfork/conferences.py.
"""
from __future__ import annotations

import logging
import re

import requests
from flask import jsonify, request

from verbs import flite_voice
from verbs.vobiz.speak import SPEAK_LANGUAGES

from . import cluster_lists
from .api_objects import ApiError, api_id, callback_target, read_body
from .conferences import ConferenceFailed, ConferenceNotFound, Conferences, MemberNotFound
from .drain import InboundPaused

log = logging.getLogger("callfork.api")


def register(app, service, check_account) -> None:
    """Add the Conference routes to `app` (authenticated with create_app's `check_account`)."""
    rooms = Conferences(service)
    base = "/api/v1/Account/<account>/Conference"
    allow_private = service.config.server.allow_private_urls

    def ask(fn, *args):
        try:
            return fn(*args)
        except ConferenceNotFound:
            raise ApiError(404, "conference not found") from None
        except MemberNotFound:
            raise ApiError(404, "member not found") from None
        except ConferenceFailed as exc:
            log.error("conference API: %s", exc)
            raise ApiError(500, str(exc)) from None

    def accepted(message: str, members: list):
        return jsonify({"api_id": api_id(), "message": message, "member_id": members}), 202

    peers = requests.Session()   # asks the other nodes of a cluster for their rooms

    def other_nodes_rooms() -> list[str]:
        """The rooms of the other nodes the registry gives rooms to: each node's own answer, or the
        registry's names when it gave none."""
        def answered(answer, names):
            found = answer.get("conferences")
            return [str(n) for n in found] if isinstance(found, list) else names

        return cluster_lists.collect(
            service, peers, "rooms", lambda registry: ((e.get("node"), e["room"]) for e in registry.cluster_rooms()),
            answered, stand_in=lambda names: names)

    @app.get(base + "/")
    def list_conferences(account):
        check_account(account)
        names = ask(rooms.names)
        if service.cluster is not None and not cluster_lists.carried(service):
            names = sorted(set(names) | set(other_nodes_rooms()))
        return jsonify({"api_id": api_id(), "conferences": names})

    @app.delete(base + "/")
    def hangup_all_conferences(account):
        check_account(account)
        ask(rooms.hangup_every_room)
        return "", 204

    @app.get(base + "/<name>/")
    def get_conference(account, name):
        check_account(account)
        return jsonify(dict(ask(rooms.get, name), api_id=api_id()))

    @app.delete(base + "/<name>/")
    def hangup_conference(account, name):
        check_account(account)
        ask(rooms.hangup_all, name)
        return "", 204

    @app.delete(base + "/<name>/Member/<ids>/")
    def hangup_member(account, name, ids):
        check_account(account)
        return accepted("hangup", ask(rooms.member_action, name, ids, "hangup"))

    @app.post(base + "/<name>/Member/<ids>/Kick/")
    def kick_member(account, name, ids):
        check_account(account)
        return accepted("kicked", ask(rooms.member_action, name, ids, "kick"))

    @app.route(base + "/<name>/Member/<ids>/Mute/", methods=["POST", "DELETE"])
    def mute_member(account, name, ids):
        check_account(account)
        if request.method == "DELETE":
            ask(rooms.member_action, name, ids, "unmute")
            return "", 204
        return accepted("muted", ask(rooms.member_action, name, ids, "mute"))

    @app.route(base + "/<name>/Member/<ids>/Deaf/", methods=["POST", "DELETE"])
    def deaf_member(account, name, ids):
        check_account(account)
        if request.method == "DELETE":
            ask(rooms.member_action, name, ids, "undeaf")
            return "", 204
        return accepted("deaf", ask(rooms.member_action, name, ids, "deaf"))

    @app.post(base + "/<name>/Member/<ids>/Play/")
    def play_member(account, name, ids):
        check_account(account)
        url = str(read_body().get("url") or "").strip()
        if not url.startswith(("http://", "https://")):
            raise ApiError(400, "url (an http(s) audio URL) is required")
        try:
            members = ask(rooms.play, name, ids, url)
        except ApiError:
            raise
        except Exception as exc:      # the media cache: not reachable, not audio
            raise ApiError(400, f"url: {exc}") from None
        return accepted("play queued into conference", members)

    @app.post(base + "/<name>/Member/<ids>/Speak/")
    def speak_member(account, name, ids):
        check_account(account)
        body = read_body()
        text = str(body.get("text") or "").strip()
        if not text:
            raise ApiError(400, "text is required")
        voice = str(body.get("voice") or "WOMAN").strip()
        if voice.upper() in ("WOMAN", "MAN"):
            voice = voice.upper()
        elif not re.fullmatch(r"[A-Za-z]+\.[A-Za-z0-9_\-]+", voice):
            raise ApiError(400, f"voice must be WOMAN, MAN or a provider voice such as Polly.Amy; got {voice!r}")
        language = str(body.get("language") or "en-US").strip()
        if voice in ("WOMAN", "MAN") and language not in SPEAK_LANGUAGES:
            raise ApiError(400, f"language {language!r} is not available for voice {voice}")
        voice_name = flite_voice(service.config, voice)   # <Speak>'s mapping ([tts] voices)
        if ids.strip().lower() != "all":
            try:   # the members' speech is rendered by a loopback channel (conference_speech.py)
                service.drain.check_loopback()
            except InboundPaused as exc:
                ask(rooms.room, name)   # an unknown room is still a 404
                log.warning("conference %r: speech to members %s refused: %s", name, ids, exc)
                raise ApiError(503, f"speech to chosen members cannot be rendered now: {exc}; "
                                    "speak to all members instead") from None
        return accepted("speak queued into conference", ask(rooms.speak, name, ids, text, voice_name))

    @app.post(base + "/<name>/Record/")
    def record_conference(account, name):
        check_account(account)
        body = read_body()
        file_format = str(body.get("file_format") or "wav").strip().lower()
        if file_format not in ("wav", "mp3"):
            raise ApiError(400, f"file_format must be wav or mp3; got {file_format!r}")
        callback_url, callback_method = callback_target(body, allow_private)
        the_api_id = api_id()
        recording_id, url = ask(rooms.record_start, name, file_format, callback_url, callback_method, the_api_id)
        return jsonify({"api_id": the_api_id, "message": "conference recording started",
                        "recording_id": recording_id, "url": url}), 202

    @app.delete(base + "/<name>/Record/")
    def stop_record_conference(account, name):
        check_account(account)
        ask(rooms.record_stop, name)
        return "", 204
