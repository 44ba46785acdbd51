"""audio_fork.command: command lines as mod_audio_fork tokenises them. The tokenizer below follows
FreeSWITCH's switch_separate_string (blank delimiter) + cleanup_separated_string, and is first
checked against what the real module did with the captured metadata variants."""
import json
import os

import pytest

from audio_fork.command import (build_fork_command, encode_metadata, escape_arg, fork_send_text,
                                fork_start, fork_stop, mix_for_track, parse_reply, rate_arg)
from audio_fork.errors import ForkCommandError

from audio_fork_fakes import fs_split, module_start_args

CAPTURES = os.path.join(os.path.dirname(__file__), "fixtures", "fs-captures")


def _load(flavor):
    with open(os.path.join(CAPTURES, f"audio-fork-results-{flavor}.json")) as fh:
        return json.load(fh)


@pytest.mark.parametrize("flavor", ["drachtio", "jambonz"])
def test_tokenizer_reproduces_the_captured_metadata_behaviour(flavor):
    for case in _load(flavor)["metadata_quoting"]:
        args = module_start_args(case["api"], flavor)
        received = case["text_frames_received"]
        if args["metadata"] is None:
            assert received == [], case["case"]
        else:
            assert received[0] == args["metadata"], case["case"]


def test_bidirectional_start_matches_the_captured_command_exactly():
    for s in _load("jambonz")["scenarios"]:
        api = s["api_start"]
        if not s["name"].startswith("D-bidi"):
            continue
        parts = api.split(" ")
        uuid, url, mix, rate, bug, meta, bidi_rate = parts[1], parts[3], parts[4], parts[5], parts[6], parts[7], parts[10]
        rate_n = {"8k": 8000, "16k": 16000}[rate]
        assert fork_start(uuid, url, mix, rate_n, bug, json.loads(meta), bidirectional_rate=int(bidi_rate)) == api


def test_one_way_start_is_understood_like_the_captured_ones():
    for flavor in ("drachtio", "jambonz"):
        for s in _load(flavor)["scenarios"]:
            captured = module_start_args(s["api_start"], flavor)
            if captured["bidi"] is not None or captured["rate"] not in ("8k", "16k"):
                continue
            uuid = s["api_start"].split(" ")[1]
            meta = json.loads(captured["metadata"]) if captured["metadata"] else None
            ours = fork_start(uuid, captured["url"], captured["mix"], {"8k": 8000, "16k": 16000}[captured["rate"]],
                              captured["bug"], meta)
            ours_args = module_start_args(ours, flavor)
            assert {k: v for k, v in ours_args.items() if k != "uuid"} == \
                {k: v for k, v in captured.items() if k != "uuid"}, s["name"]


NASTY = {"a": 1, "b": "x y", "q": "it's", "bs": "back\\slash \"quoted\"", "nl": "l1\nl2\ttab", "uni": "é€", "list": [1, " "]}


@pytest.mark.parametrize("flavor", ["drachtio", "jambonz"])
def test_metadata_with_spaces_quotes_and_escapes_survives_tokenisation(flavor):
    bidi = 8000 if flavor == "jambonz" else None
    line = fork_start("u-1", "ws://127.0.0.1:9/fork/s1?token=abc-_", "stereo", 16000, "callfork_s1", NASTY,
                      bidirectional_rate=bidi)
    assert "\n" not in line
    args = module_start_args(line, flavor)
    assert args["bug"] == "callfork_s1" and args["url"] == "ws://127.0.0.1:9/fork/s1?token=abc-_"
    assert args["mix"] == "stereo" and args["rate"] == "16k"
    assert json.loads(args["metadata"]) == NASTY
    assert " " not in args["metadata"]
    assert args["bidi"] == ((True, True, "8000") if bidi else None)


def test_stop_and_send_text_keep_any_text():
    text = "final {\"event\": \"stop\", 'reason': \"a\\b\"}\nend"
    for line, slots in ((fork_stop("u-1", "callfork_s1", text), 7), (fork_send_text("u-1", "callfork_s1", text), 10)):
        argv = fs_split(line.split(" ", 1)[1], slots)
        assert argv[2] == "callfork_s1" and argv[3] == text and len(argv) == 4
    assert fork_stop("u-1", "callfork_s1") == "uuid_audio_fork u-1 stop callfork_s1"
    assert build_fork_command("u-1", "pause", "b1") == "uuid_audio_fork u-1 pause b1"
    assert build_fork_command("u-1", "resume", "b1") == "uuid_audio_fork u-1 resume b1"
    assert build_fork_command("u-1", "graceful-shutdown", "b1") == "uuid_audio_fork u-1 graceful-shutdown b1"
    assert build_fork_command("u-1", "stop_play") == "uuid_audio_fork u-1 stop_play"


def test_bad_arguments_are_refused_before_reaching_freeswitch():
    with pytest.raises(ValueError):
        fork_start("u", "foo://x", "mono", 8000, "b")  # the module would start a capture anyway
    with pytest.raises(ValueError):
        fork_start("u", "ws://x/y", "quad", 8000, "b")
    with pytest.raises(ValueError):
        fork_start("u", "ws://x/y", "mono", 11025, "b")
    with pytest.raises(ValueError):
        fork_start("u", "ws://x/y", "mono", 8000, "{bug}")
    with pytest.raises(ValueError):
        encode_metadata("not json")
    with pytest.raises(ValueError):
        encode_metadata({"big": "x" * 9000})
    with pytest.raises(ValueError):
        escape_arg("")
    with pytest.raises(ValueError):
        build_fork_command("u", "frobnicate")


def test_track_and_rate_mapping():
    assert [mix_for_track(t) for t in ("inbound", "both", "outbound")] == ["mono", "stereo", "stereo"]
    assert (rate_arg(8000), rate_arg(16000), rate_arg(24000)) == ("8k", "16k", "24000")


def test_replies_from_the_captures():
    for flavor in ("drachtio", "jambonz"):
        for case in _load(flavor)["failure_cases"]:
            reply = case["response"]
            if reply.startswith("+OK"):
                assert parse_reply(reply) == "Success"
            else:
                with pytest.raises(ForkCommandError) as info:
                    parse_reply(reply, case["api"])
                assert info.value.reply == reply and info.value.command == case["api"]
    with pytest.raises(ForkCommandError):
        parse_reply("")
