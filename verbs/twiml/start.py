"""TwiML <Start> (https://www.twilio.com/docs/voice/twiml/stream) with its <Stream> nouns: each a
one-way Twilio Media Stream (verbs/twiml/stream.py: `track` inbound_track | outbound_track |
both_tracks) that runs in the background while the next verbs run, until <Stop><Stream name>, the
app closing its socket, or the end of the call. With `action`, its document replaces the rest once
the streams are started (Twilio's <Start action>). Its other nouns (<Siprec>, <Transcription>,
<Recording>) are refused by the parser as unknown children.
"""
from ..streaming import LiveStream
from .stream import StreamVerb, twiml_streams


class Start(StreamVerb):
    name = "Start"

    def check(self):
        if not self.children:
            return ["<Start> needs a <Stream>"]
        names = [c.stream_name for c in self.children if c.stream_name]
        if len(set(names)) < len(names):
            return ["two <Stream>s of one <Start> have the same name"]
        return []

    def run(self, call) -> None:
        call.ensure_answered()
        for noun in self.children:
            running = {s.options.name for s in twiml_streams(call)}
            if noun.stream_name and noun.stream_name in running:
                call.error(f"<Stream> line {noun.line}: a stream named {noun.stream_name!r} is already "
                           "running on this call; this one is not started")
                continue
            LiveStream(call, noun.stream_options(bidirectional=False, call=call)).start()
        self.follow_action(call)
