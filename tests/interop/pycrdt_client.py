#!/usr/bin/env python3
"""A y-websocket client built on pycrdt, for the gateway interop tests.

It speaks the y-websocket protocol by hand with pycrdt's sync helpers:
  - on open it sends SyncStep1 (its state vector);
  - it answers the server's SyncStep1 with SyncStep2 (handle_sync_message does that);
  - it applies SyncStep2 / Update payloads (v1 updates);
  - local changes go out as Update frames [0, 2, varUint8Array(update)];
  - awareness frames are counted and otherwise ignored.

Steps run in order after the initial sync (repeatable --step):
  set:KEY=JSON      map.set(KEY, JSON value) in the doc's "map" (a Y.Map, like the JS tests)
  wait:KEY=JSON     wait until map[KEY] == JSON value
  sleep:MS          sleep MS milliseconds
--pre KEY=JSON sets a value before connecting (an offline edit, uploaded through SyncStep2).

Prints one JSON line on stdout: {"ok": true, "map": {...}, "state_vector": base64, ...}.
Exit code 0 on success, 2 on timeout or protocol error (with {"ok": false, "error": ...}).
Every wait is bounded by --timeout (seconds) and the whole run by --total-timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from urllib.parse import urlsplit

from pycrdt import (
    Doc,
    Map,
    YMessageType,
    YSyncMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)
from websockets.asyncio.client import connect


def parse_kv(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"expected KEY=JSON, got {text!r}")
    return key, json.loads(value)


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.doc = Doc()
        self.map = self.doc.get("map", type=Map)
        self.applying_remote = False
        self.outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self.synced = asyncio.Event()
        self.changed = asyncio.Event()
        self.frames_in = 0
        self.awareness_frames = 0
        self.sync_frames: dict[str, int] = {"step1": 0, "step2": 0, "update": 0}

    def on_transaction(self, event) -> None:
        self.changed.set()
        if self.applying_remote:
            return
        self.outgoing.put_nowait(create_update_message(event.update))

    async def sender(self, ws) -> None:
        while True:
            message = await self.outgoing.get()
            await ws.send(message)
            self.outgoing.task_done()

    async def receiver(self, ws) -> None:
        async for message in ws:
            if isinstance(message, str):
                raise RuntimeError(f"unexpected text frame: {message[:80]!r}")
            self.frames_in += 1
            if not message:
                continue
            if message[0] == YMessageType.SYNC:
                sub = message[1]
                if sub == YSyncMessageType.SYNC_STEP1:
                    self.sync_frames["step1"] += 1
                elif sub == YSyncMessageType.SYNC_STEP2:
                    self.sync_frames["step2"] += 1
                elif sub == YSyncMessageType.SYNC_UPDATE:
                    self.sync_frames["update"] += 1
                self.applying_remote = True
                try:
                    reply = handle_sync_message(message[1:], self.doc)
                finally:
                    self.applying_remote = False
                if reply is not None:
                    await ws.send(reply)
                if sub == YSyncMessageType.SYNC_STEP2:
                    self.synced.set()
            elif message[0] == YMessageType.AWARENESS:
                self.awareness_frames += 1

    async def wait_value(self, key: str, value: object, timeout: float) -> None:
        async def loop() -> None:
            while self.map.get(key) != value:
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), 0.2)
                except asyncio.TimeoutError:
                    pass

        try:
            await asyncio.wait_for(loop(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"timed out after {timeout}s waiting for map[{key!r}] == {value!r}; map={self.map.to_py()!r}"
            ) from None

    async def run(self) -> dict:
        a = self.args
        for kv in a.pre:
            key, value = parse_kv(kv)
            self.map[key] = value
        # Observed only from here on: --pre edits reach the server through our SyncStep2 answer to the
        # server's SyncStep1, like y-websocket's offline edits.
        self.subscription = self.doc.observe(self.on_transaction)
        url = f"{a.url.rstrip('/')}/{a.room}"
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise RuntimeError(f"refusing non-loopback url {url}")
        subprotocols = [f"yauth-{a.token}"] if a.token and a.via == "protocol" else None
        if a.token and a.via == "query":
            url += f"?{a.query_param}={a.token}"
        async with connect(
            url,
            subprotocols=subprotocols,
            max_size=None,
            open_timeout=a.timeout,
            close_timeout=5,
            ping_interval=20,
        ) as ws:
            if subprotocols and ws.subprotocol != subprotocols[0]:
                raise RuntimeError(f"server accepted subprotocol {ws.subprotocol!r}")
            tasks = [asyncio.create_task(self.receiver(ws)), asyncio.create_task(self.sender(ws))]
            try:
                await ws.send(create_sync_message(self.doc))
                await self.await_or_fail(self.synced.wait(), a.timeout, "SyncStep2 from the server", tasks)
                for step in a.step:
                    kind, _, rest = step.partition(":")
                    if kind == "set":
                        key, value = parse_kv(rest)
                        with self.doc.transaction():
                            self.map[key] = value
                    elif kind == "wait":
                        key, value = parse_kv(rest)
                        await self.await_or_fail(self.wait_value(key, value, a.timeout), a.timeout + 1, f"map[{key!r}]", tasks)
                    elif kind == "sleep":
                        await asyncio.sleep(int(rest) / 1000)
                    else:
                        raise ValueError(f"unknown step {step!r}")
                await self.await_or_fail(self.outgoing.join(), a.timeout, "outgoing updates to be sent", tasks)
                await asyncio.sleep(a.linger / 1000)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return {
            "ok": True,
            "map": self.map.to_py(),
            "state_vector": base64.b64encode(self.doc.get_state()).decode(),
            "update": base64.b64encode(self.doc.get_update()).decode(),
            "frames_in": self.frames_in,
            "sync_frames": self.sync_frames,
            "awareness_frames": self.awareness_frames,
            "client_id": self.doc.client_id,
        }

    @staticmethod
    async def await_or_fail(coro, timeout: float, what: str, tasks) -> None:
        """Waits for coro, but fails early if the receiver/sender died (closed socket, protocol error)."""
        main = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait([main, *tasks], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if main in done:
            main.result()
            return
        main.cancel()
        for t in tasks:
            if t in done:
                exc = t.exception()
                raise RuntimeError(f"connection ended while waiting for {what}: {exc!r}")
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="base URL, e.g. ws://127.0.0.1:PORT/yjs")
    p.add_argument("--room", required=True)
    p.add_argument("--token", default="")
    p.add_argument("--via", choices=["protocol", "query"], default="protocol")
    p.add_argument("--query-param", default="yauth")
    p.add_argument("--pre", action="append", default=[], metavar="KEY=JSON")
    p.add_argument("--step", action="append", default=[])
    p.add_argument("--timeout", type=float, default=20.0, help="seconds, per wait")
    p.add_argument("--total-timeout", type=float, default=90.0, help="seconds, whole run")
    p.add_argument("--linger", type=int, default=200, help="ms to stay connected after the last step")
    args = p.parse_args()
    client = Client(args)
    try:
        result = asyncio.run(asyncio.wait_for(client.run(), args.total_timeout))
    except BaseException as e:  # noqa: BLE001 - report everything as JSON for the Node side
        if isinstance(e, KeyboardInterrupt):
            raise
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}", "map": client.map.to_py()}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
