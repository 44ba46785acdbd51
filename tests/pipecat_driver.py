"""Runs pipecat's real serializers for tests/test_scenario_stream_pipecat.py, in their own venv
($CALLFORK_SERIALIZERS_PYTHON or .venv-serializers: pipecat-ai 1.14 TwilioFrameSerializer,
pipecat-vobiz 0.0.3 VobizFrameSerializer). Not a test module: the test starts it as a subprocess and
talks JSON lines on stdin/stdout, one reply line per request:

  {"op": "detect", "frames": [text, text]}       -> parse_telephony_websocket (+ parse_vobiz_start)
  {"op": "open", "provider": "twilio"|"vobiz", "stream_id", "call_id", "encoding", "sample_rate",
   "l16_byte_order", "pipeline_rate"}              -> {"ok": true}
  {"op": "deserialize", "messages": [text, ...]} -> {"audio": b64 PCM, "sample_rate", "dtmf": [...],
                                                     "frames": {type: count}}
  {"op": "serialize", "audio": b64 PCM, "sample_rate", "chunk_ms"} -> {"messages": [...]}
  {"op": "interrupt"} / {"op": "end"}            -> {"messages": [...]}
  {"op": "hangup", "stream_id", "call_id", "account_sid", "auth_token", "base_url"}
                                                  -> {"messages": [...], "log": [...]}: a TwilioFrameSerializer
     with auto hang-up (its default) serializes an EndFrame, as pipecat's transport does when the
     pipeline ends: it POSTs Status=completed to base_url's Calls/<call_id>.json; what it logged
     (every level) tells how that went
"""
import asyncio
import base64
import json
import sys
import types

import logging

from loguru import logger

logger.remove()
logger.add(sys.stderr, level="WARNING")
logging.disable(logging.INFO)

from pipecat.frames.frames import (EndFrame, InputAudioRawFrame, InputDTMFFrame,  # noqa: E402
                                   InterruptionFrame, OutputAudioRawFrame)
from pipecat.runner.utils import parse_telephony_websocket  # noqa: E402
from pipecat.serializers.twilio import TwilioFrameSerializer  # noqa: E402
from pipecat.serializers.vobiz import VobizFrameSerializer, parse_vobiz_start  # noqa: E402


class FakeWebSocket:
    """What parse_telephony_websocket / parse_vobiz_start read: the frames our relay sent."""

    def __init__(self, frames):
        self.frames = list(frames)

    async def _iter(self):
        for f in self.frames:
            yield f

    def iter_text(self):
        return self._iter()

    async def receive_text(self):
        return self.frames.pop(0)


async def main():
    serializer = None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        req = json.loads(line)
        op = req["op"]
        if op == "detect":
            transport, data = await parse_telephony_websocket(FakeWebSocket(req["frames"]))
            out = {"transport": transport, "call_data": dict(data) if not hasattr(data, "model_dump")
                   else data.model_dump()}
            vobiz = await parse_vobiz_start(FakeWebSocket(req["frames"]))
            vobiz.pop("raw", None)
            out["vobiz_start"] = vobiz
        elif op == "open":
            setup = types.SimpleNamespace(audio_in_sample_rate=req.get("pipeline_rate", 8000))
            if req["provider"] == "twilio":
                serializer = TwilioFrameSerializer(req["stream_id"], req.get("call_id"),
                                                   params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
            else:
                params = VobizFrameSerializer.InputParams(
                    vobiz_sample_rate=req["sample_rate"], encoding=req["encoding"],
                    l16_byte_order=req.get("l16_byte_order", "be"), auto_hang_up=True, hangup_method="ws_stop")
                serializer = VobizFrameSerializer(req["stream_id"], req.get("call_id"), params=params)
            await serializer.setup(setup)
            out = {"ok": True}
        elif op == "deserialize":
            audio, dtmf, counts, rate = [], [], {}, None
            for text in req["messages"]:
                frame = await serializer.deserialize(text)
                name = type(frame).__name__ if frame is not None else "None"
                counts[name] = counts.get(name, 0) + 1
                if isinstance(frame, InputAudioRawFrame):
                    audio.append(frame.audio)
                    rate = frame.sample_rate
                elif isinstance(frame, InputDTMFFrame):
                    dtmf.append(frame.button.value)
            out = {"audio": base64.b64encode(b"".join(audio)).decode(), "sample_rate": rate, "dtmf": dtmf,
                   "frames": counts}
        elif op == "serialize":
            pcm = base64.b64decode(req["audio"])
            rate = req["sample_rate"]
            step = rate * 2 * req.get("chunk_ms", 40) // 1000
            messages = []
            for i in range(0, len(pcm), step):
                text = await serializer.serialize(OutputAudioRawFrame(audio=pcm[i:i + step], sample_rate=rate,
                                                                      num_channels=1))
                if text:
                    messages.append(text)
            out = {"messages": messages}
        elif op == "interrupt":
            out = {"messages": [m for m in [await serializer.serialize(InterruptionFrame())] if m]}
        elif op == "end":
            out = {"messages": [m for m in [await serializer.serialize(EndFrame())] if m]}
        elif op == "hangup":
            hanging = TwilioFrameSerializer(req["stream_id"], req["call_id"], account_sid=req["account_sid"],
                                            auth_token=req["auth_token"], base_url=req["base_url"])
            await hanging.setup(types.SimpleNamespace(audio_in_sample_rate=8000))
            logged = []
            sink = logger.add(lambda message: logged.append(message.record["message"]), level="DEBUG")
            try:
                messages = [m for m in [await hanging.serialize(EndFrame())] if m]
            finally:
                logger.remove(sink)
            out = {"messages": messages, "log": logged}
        else:
            out = {"error": f"unknown op {op}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
