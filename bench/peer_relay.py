"""The peer relay: the mod_audio_fork relay a user would write first, measured in the relay benchmark's
harness (same load generator, sink, N and window; getrusage of this process) as the "peer" row, so
callfork's relay is shown against what it replaces, not only against floors.

What it is: asyncio and the `websockets` library (its asyncio server and client, as their docs
show), one coroutine per stream: the fork's WebSocket (`/fork/<stream id>`, subprotocol
`audio.drachtio.org`) is served by `websockets.asyncio.server.serve`; per fork the relay connects
to the app with `websockets.asyncio.client.connect`, sends the Vobiz `start` message, then for
each binary message from the fork sends a Vobiz `media` JSON text (`json.dumps`, compact as Vobiz
sends it; payload `base64.b64encode`). Text frames from the fork (the metadata) are ignored. Nothing
of callfork is imported on its data path. One-way only.

The harness side (not what is measured): the JSON-lines control protocol of `bench.common.Child`
(`start`, `cpu`, `stop_all`, `exit`), and the line protocol to the load generator that stands in
for FreeSWITCH (`uuid_audio_fork <uuid> start ws://127.0.0.1:<port>/fork/<sid> mono 8k|16k
audio_fork <metadata>`); `start` answers once every fork has reached the app (or after 60 s).
Stdin EOF (the orchestrator is gone) ends the process.

`python -m bench.peer_relay <switch-port>` (started by bench/relay.py).
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
import uuid as uuidlib

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

START_WAIT_S = 60.0


class PeerRelay:
    def __init__(self):
        self.apps: dict = {}        # stream id -> app URL
        self.rate: dict = {}        # stream id -> sample rate
        self.up = 0                 # forks whose app connection is open and `start` sent
        self.frames_in = 0
        self.app_dropped = 0
        self.forks: set = set()
        self.switch_reader = self.switch_writer = None
        self.pending: dict = {}
        self.n = 0
        self.done = asyncio.Event()

    # -- the relay (what the peer row measures) -------------------------------------------------

    async def handle_fork(self, fork) -> None:
        sid = fork.request.path.rsplit("/", 1)[-1]
        app_url = self.apps.get(sid)
        if app_url is None:
            await fork.close(1008, "unknown stream")
            return
        self.forks.add(fork)
        try:
            async with connect(app_url) as app:
                await app.send(json.dumps({
                    "sequenceNumber": 0, "event": "start",
                    "start": {"callId": sid, "streamId": sid, "accountId": "MA_BENCH", "tracks": ["inbound"],
                              "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": self.rate[sid]}},
                    "extra_headers": "{}"}, separators=(",", ":")))
                self.up += 1
                seq = chunk = 0
                started = time.time()
                async for message in fork:
                    if isinstance(message, str):
                        continue   # the fork's metadata
                    self.frames_in += 1
                    seq += 1
                    chunk += 1
                    await app.send(json.dumps({
                        "sequenceNumber": seq, "streamId": sid, "event": "media",
                        "media": {"track": "inbound", "timestamp": str(int((time.time() - started) * 1000)),
                                  "chunk": chunk, "payload": base64.b64encode(message).decode()},
                        "extra_headers": "{}"}, separators=(",", ":")))
        except Exception as exc:  # noqa: BLE001 - one stream's end (the bench stops them all)
            print(f"peer relay: stream {sid}: {exc!r}", file=sys.stderr)
        finally:
            self.forks.discard(fork)

    # -- the harness --------------------------------------------------------------------------------

    async def api(self, cmd: str) -> str:
        self.n += 1
        rid = str(self.n)
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        self.switch_writer.write(f"{rid} {cmd}\n".encode())
        await self.switch_writer.drain()
        return await asyncio.wait_for(fut, 30)

    async def read_switch(self) -> None:
        async for line in self.switch_reader:
            rid, _, reply = line.decode().rstrip("\n").partition(" ")
            fut = self.pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(reply)

    async def c_start(self, n: int, sink_url: str, rate: int = 8000, bidi: bool = False, prefix: str = "s",
                      **_ignored) -> dict:
        if bidi:
            raise ValueError("the peer relay is one-way")
        t0 = time.monotonic()
        before = self.up
        errors = []
        for i in range(n):
            sid = f"{prefix}{i}"
            self.apps[sid], self.rate[sid] = f"{sink_url}/{sid}", rate
            reply = await self.api(f"uuid_audio_fork {uuidlib.uuid4()} start ws://127.0.0.1:{self.port}/fork/{sid} "
                                   f"mono {rate // 1000}k audio_fork {{}}")
            if not reply.startswith("+OK"):
                errors.append(reply)
        deadline = time.monotonic() + START_WAIT_S
        while self.up - before < n - len(errors) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        started = self.up - before
        return {"started": started, "failed": n - started, "errors": errors[:3], "elapsed_s": time.monotonic() - t0}

    async def c_cpu(self) -> dict:
        out = _cpu_times()
        out.update(frames_in=self.frames_in, frames_out=0, streams_live=len(self.forks))
        return out

    async def c_stop_all(self) -> dict:
        forks = list(self.forks)
        await asyncio.gather(*(f.close() for f in forks), return_exceptions=True)
        return {"app_dropped": 0, "protocol_errors": 0, "playout_dropped": 0, "events": {},
                "unstopped": len(self.forks)}

    async def control(self, reader, writer) -> None:
        handlers = {"start": self.c_start, "cpu": self.c_cpu, "stop_all": self.c_stop_all}
        async for line in reader:
            req = json.loads(line)
            cmd = req.pop("cmd")
            if cmd == "exit":
                res = {"ok": True}
                self.done.set()
            else:
                try:
                    res = await handlers[cmd](**req)
                except Exception as exc:  # noqa: BLE001 - reported to the orchestrator
                    res = {"error": f"{type(exc).__name__}: {exc}"}
            writer.write((json.dumps(res) + "\n").encode())
            await writer.drain()
            if self.done.is_set():
                return

    async def main(self, switch_port: int) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), self._stdin)
        self.switch_reader, self.switch_writer = await asyncio.open_connection("127.0.0.1", switch_port)
        reader_task = asyncio.create_task(self.read_switch())
        async with serve(self.handle_fork, "127.0.0.1", 0, subprotocols=["audio.drachtio.org"],
                         ping_interval=None, max_size=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            control = await asyncio.start_server(self.control, "127.0.0.1", 0)
            port = control.sockets[0].getsockname()[1]
            sys.stdout.write(json.dumps({"control": port, "pid": os.getpid()}) + "\n")
            sys.stdout.flush()
            await self.done.wait()
            control.close()
        reader_task.cancel()

    def _stdin(self) -> None:
        if not os.read(sys.stdin.fileno(), 65536):
            os._exit(0)   # the orchestrator is gone


def _cpu_times() -> dict:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"user": ru.ru_utime, "sys": ru.ru_stime, "t_ns": time.monotonic_ns()}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.peer_relay <switch-port>   (use python -m bench relay)")
    asyncio.run(PeerRelay().main(int(sys.argv[1])))
