"""`callfork validate --api twilio FILE` (callfork/cli.py), run as a user runs it: a TwiML document
built with the twilio package's VoiceResponse is valid (exit 0, a summary); a bad one (an unknown
verb, a bad attribute value, a verb nested where TwiML forbids it) gives every error with its
line:column (exit 1); without --api the same TwiML is read as Vobiz XML and refused."""
import subprocess
import sys
from pathlib import Path

from twilio.twiml.voice_response import Connect, VoiceResponse

ROOT = Path(__file__).resolve().parent.parent


def _validate(*args):
    done = subprocess.run([sys.executable, "-m", "callfork", "validate", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_validate_api_twilio_reads_twiml(tmp_path):
    r = VoiceResponse()
    r.say("Hello")
    r.gather(action="menu", num_digits=1).say("Press one")
    connect = Connect()
    connect.stream(url="wss://bot.example.com/ws").parameter(name="lang", value="en")
    r.append(connect)
    good = tmp_path / "good.xml"
    good.write_text(str(r))
    code, out = _validate("--api", "twilio", str(good))
    assert code == 0, out
    assert out.splitlines()[0] == f"{good}: valid TwiML, 3 verbs"
    code, out = _validate(str(good))
    assert code == 1 and "unknown element <Say>" in out

    bad = tmp_path / "bad.xml"
    bad.write_text('<Response>\n  <Say voice="robot">x</Say>\n  <Gather><Record/></Gather>\n'
                   '  <Enqueue>q</Enqueue>\n  <Bogus/>\n</Response>\n')
    code, out = _validate("--api", "twilio", str(bad))
    lines = out.splitlines()
    assert code == 1 and lines[0] == f"{bad}: invalid: 4 errors", out
    assert lines[1].startswith('  line 2:3: <Say>: voice: "robot" is not a voice')
    assert lines[2] == "  line 3:11: <Record>: <Record> is not allowed inside <Gather>; allowed: Say, Play, Pause"
    assert lines[3] == "  line 4:3: <Enqueue>: <Enqueue> is not supported by callfork"
    assert lines[4].startswith("  line 5:3: <Bogus>: unknown element <Bogus>")


def test_a_say_in_another_language_than_english_is_valid_with_a_warning(tmp_path):
    """flite speaks English only: <Say language="fr-FR"> runs, and validate says it will be English;
    an English variant is no warning."""
    r = VoiceResponse()
    r.say("Bonjour", language="fr-FR")
    r.say("Hello", language="en-GB")
    doc = tmp_path / "say.xml"
    doc.write_text(str(r))
    code, out = _validate("--api", "twilio", str(doc))
    assert code == 0, out
    warnings = out.split("warnings:\n", 1)[1].splitlines()
    assert len(warnings) == 1 and 'language "fr-FR" is spoken in English' in warnings[0], out
