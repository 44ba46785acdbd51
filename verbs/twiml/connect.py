"""TwiML <Connect> (https://www.twilio.com/docs/voice/twiml/connect) with its <Stream> noun: a
bidirectional Twilio Media Stream (verbs/twiml/stream.py) that holds the call until the stream
ends (the app closes its socket, or the socket fails); the app's `media` is what the caller hears.
Then the `action` URL, when given, is requested with the call's parameters and its document
replaces the rest; without it the next verb runs. The caller hanging up ends the call there.
Connect's other nouns (<ConversationRelay>, <Room>, <VirtualAgent>, ...) are Twilio services
callfork does not have: the parser refuses them as unknown children.
"""
from ..streaming import LiveStream
from .stream import StreamVerb


class Connect(StreamVerb):
    name = "Connect"

    def check(self):
        streams = [c for c in self.children if c.name == "Stream"]
        if len(streams) != 1:
            return [f"<Connect> takes one <Stream> (found {len(streams)})"]
        return []

    def run(self, call) -> None:
        call.ensure_answered()
        stream = LiveStream(call, self.children[0].stream_options(bidirectional=True, call=call))
        if stream.start():
            stream.wait()           # CallGone when the caller hangs up meanwhile
        self.follow_action(call)
