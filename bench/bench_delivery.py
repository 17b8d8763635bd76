"""What crash safety costs the deliverer: messages per second at ``sends_in_flight`` 1 and 8.

A real HTTP gateway on loopback (answers in ``--latency`` seconds) receives SMS from the
deliverer over a SQLite store. With ``sends_in_flight: 1`` (the default) each message is
recorded sent before the next goes, so a crash resends at most one; with 8, lanes overlap their
sends and a crash may resend up to 8. The last line gives both rates and their ratio:

    delivery: ratio 0.31 (in_flight 1: 180 msg/s; in_flight 8: 590 msg/s; gateway latency 5 ms)

Run: ``python bench/bench_delivery.py [--messages N] [--latency S] [--database URL]``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from flowctl.channels.http import HttpSender
from flowctl.engine.state import Effect, Step
from flowctl.ports import Processed
from flowctl.runtime.daemon.clock import SystemClock
from flowctl.runtime.delivery.deliverer import Deliverer
from flowctl.spec.model import Channel, Metadata
from flowctl.store import open_store


def gateway(latency: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each answer waits for a delayed ACK (40 ms)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(latency)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def rate(url: str, messages: int, in_flight: int, gateway_url: str) -> float:
    store = open_store(url)
    effects = [Effect(key=f"k{i}", action="send_sms", run_id="r", object="deal", record_id=str(i), channel="sms",
                      params={"to": f"09{i:08d}", "text": "Khuyen mai"}) for i in range(messages)]  # fmt: skip
    store.commit_batch([Processed(step=Step(effects=effects))], datetime.now(UTC))
    channel = Channel(metadata=Metadata(name="sms"), type="http", url=f"{gateway_url}/sms",
                      body={"to": "{{ to }}", "text": "{{ text }}"})  # fmt: skip
    sender = HttpSender(channel, {})
    deliverer = Deliverer(store, {"sms": sender}, SystemClock(), owner="bench", rng=random.Random(1),
                          in_flight=in_flight)  # fmt: skip
    started = time.perf_counter()
    while deliverer.deliver_once():
        pass
    elapsed = time.perf_counter() - started
    deliverer.close()
    sender.close()
    sent = len(store.list_outbox(limit=messages + 1, status="sent"))
    store.close()
    assert sent == messages, f"only {sent} of {messages} sent"
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.005, help="seconds the gateway takes per message")
    parser.add_argument("--database", default="", help="a store URL (default: a fresh SQLite file per run)")
    args = parser.parse_args()
    server = gateway(args.latency)
    gateway_url = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as folder:
        rates = {}
        for in_flight in (1, 8):
            url = args.database or f"sqlite:///{Path(folder) / f'deliver-{in_flight}.db'}"
            rates[in_flight] = rate(url, args.messages, in_flight, gateway_url)
            print(f"in_flight {in_flight}: {rates[in_flight]:.0f} msg/s")
    server.shutdown()
    print(f"delivery: ratio {rates[1] / rates[8]:.2f} (in_flight 1: {rates[1]:.0f} msg/s; in_flight 8: "
          f"{rates[8]:.0f} msg/s; gateway latency {args.latency * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
