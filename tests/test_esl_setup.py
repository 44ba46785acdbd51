"""CallSession.setup() over real TCP: after `connect`, the four setup commands (`linger`, `myevents`,
`event json ...`, `api uuid_setvar <uuid> app_disable_expand_variables true`) are written back to
back and their replies checked in order afterwards (FreeSWITCH reads commands one by one and
answers in order). The scripted FreeSWITCH answers with captured reply bytes, and only once all
four commands have arrived; then it answers one of them with -ERR, closes the socket in the middle,
or stops answering. Each failure must end the call before the handler runs, logged once with the
call UUID, as it was with one round trip per command."""
import logging

import gevent.event
import pytest

from esl_app import OutboundESLServer
from esl_capture_tools import (CAPTURES, EVENT_JSON, ScriptedPeer, api_reply_from, exchanges, expected_frame,
                               load_blocks)
from waiting import wait_until

OUTBOUND = exchanges(load_blocks(CAPTURES / 'outbound-esl-transcript.txt'))


def _replies(predicate):
    return [e for e in OUTBOUND if predicate(e)][0].replies


CONNECT_REPLY = _replies(lambda e: e.line == 'connect')[0]
UUID = expected_frame(CONNECT_REPLY)['headers']['Unique-ID']
SETVAR = 'api uuid_setvar %s app_disable_expand_variables true' % UUID
SETUP = ['linger', 'myevents', EVENT_JSON, SETVAR]
OK = [_replies(lambda e: e.line == 'linger')[0], _replies(lambda e: e.line == 'myevents')[0],
      api_reply_from('inbound-esl-transcript.jsonl', 'event json'),
      api_reply_from('inbound-esl-bidirectional-transcript-jambonz.txt', 'api uuid_setvar')]
EXIT_REPLIES = _replies(lambda e: e.line == 'exit')


def command_reply(text):
    return b'Content-Type: command/reply\nReply-Text: %s\n\n' % text.encode()


def run_setup(on_setup, command_timeout=5.0, caplog=None):
    """One call; `on_setup(peer)` runs once all four setup commands arrived (none answered yet).
    Waits until the handler ran or (with `caplog`) callfork logged a problem. Returns (sessions
    the handler got, the peer)."""
    handled = []
    done = gevent.event.Event()
    pending = []

    def respond(peer, cmd):
        if cmd.line == 'connect':
            peer.send(CONNECT_REPLY)
        elif cmd.line == 'exit':
            for data in EXIT_REPLIES:
                peer.send(data)
            peer.close()
        else:
            pending.append(cmd)
            if len(pending) == len(SETUP):
                on_setup(peer)

    def handler(session):
        handled.append(session)
        done.set()

    server = OutboundESLServer(listen=('127.0.0.1', 0), handler=handler, command_timeout=command_timeout).start()
    peer = ScriptedPeer(server.address, respond).start()
    try:
        assert peer.closed_by_server.wait(10), 'the call did not end'
        wait_until(lambda: handled or (caplog is not None and problems(caplog)), 10, 'the end of the setup')
    finally:
        server.stop()
        peer.close()
    assert peer.error is None, peer.error
    return handled, peer


def problems(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_setup_commands_are_written_back_to_back():
    """The peer answers nothing until it has all four: one reply awaited per command would stall."""
    def answer_all(peer):
        for data in OK:
            peer.send(data)

    handled, peer = run_setup(answer_all, command_timeout=2.0)
    assert [c.line for c in peer.commands] == ['connect'] + SETUP + ['exit']
    assert len(handled) == 1
    assert handled[0].uuid == UUID and handled[0].expansion_disabled is True


@pytest.mark.parametrize('index, error', [(0, '-ERR command not found'), (1, '-ERR aready enabled.'),
                                          (2, '-ERR no keywords supplied')])
def test_an_err_reply_to_one_setup_command_ends_the_call(caplog, capfd, index, error):
    def answer(peer):
        for i, data in enumerate(OK):
            peer.send(command_reply(error) if i == index else data)

    handled, peer = run_setup(answer, caplog=caplog)
    assert handled == []
    assert [c.line for c in peer.commands] == ['connect'] + SETUP      # closed without `exit`
    [record] = problems(caplog)
    message = record.getMessage()
    assert UUID in message and error in message and 'async full' in message
    assert message.split(': ')[1].startswith(SETUP[index].split(' ')[0])     # which command failed
    assert 'Traceback' not in capfd.readouterr().err


@pytest.mark.parametrize('reply', [b'Content-Type: api/response\nContent-Length: 22\n\n-ERR No such channel!\n',
                                   command_reply('-ERR permission denied')])
def test_a_refused_uuid_setvar_only_switches_to_escaping(caplog, reply):
    def answer(peer):
        for data in OK[:3] + [reply]:
            peer.send(data)

    handled, _peer = run_setup(answer, caplog=caplog)
    assert len(handled) == 1 and handled[0].expansion_disabled is False
    [record] = problems(caplog)
    assert UUID in record.getMessage() and '-ERR' in record.getMessage() and 'escaped' in record.getMessage()


@pytest.mark.parametrize('answered', [0, 1, 2, 3])
def test_the_peer_closing_in_the_middle_of_setup_ends_the_call(caplog, capfd, answered):
    def answer_then_close(peer):
        for data in OK[:answered]:
            peer.send(data)
        peer.close()

    handled, peer = run_setup(answer_then_close, caplog=caplog)
    assert handled == []
    [record] = problems(caplog)
    assert 'before the call started' in record.getMessage()
    assert 'uuid %s' % UUID in record.getMessage() and 'is gone' in record.getMessage()
    assert 'Traceback' not in capfd.readouterr().err


@pytest.mark.parametrize('answered', [0, 2, 3])
def test_no_reply_in_the_middle_of_setup_times_out(caplog, answered):
    def answer_then_stall(peer):
        for data in OK[:answered]:
            peer.send(data)

    handled, peer = run_setup(answer_then_stall, command_timeout=0.3, caplog=caplog)
    assert handled == []
    [record] = problems(caplog)
    what = SETUP[answered].split(' ')[0]
    assert 'uuid %s' % UUID in record.getMessage() and 'no reply to %s within 0.3s' % what in record.getMessage()
    assert [c.line for c in peer.commands] == ['connect'] + SETUP
