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
import time
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

from support import gateway, sender

from flowctl.engine.state import Effect, Step
from flowctl.ports import Processed
from flowctl.runtime.daemon.clock import SystemClock
from flowctl.runtime.delivery.deliverer import Deliverer
from flowctl.store import open_store


def rate(url: str, messages: int, in_flight: int, server: ThreadingHTTPServer) -> float:
    store = open_store(url)
    effects = [
        Effect(
            key=f"k{i}",
            action="send_sms",
            run_id="r",
            object="deal",
            record_id=str(i),
            channel="sms",
            params={"to": f"09{i:08d}", "text": "Khuyen mai"},
        )
        for i in range(messages)
    ]
    store.commit_batch([Processed(step=Step(effects=effects))], datetime.now(UTC))
    sms = sender("sms", server)
    deliverer = Deliverer(store, {"sms": sms}, SystemClock(), owner="bench", rng=random.Random(1), in_flight=in_flight)
    started = time.perf_counter()
    while deliverer.deliver_once():
        pass
    elapsed = time.perf_counter() - started
    deliverer.close()
    sms.close()
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
    with tempfile.TemporaryDirectory() as folder:
        rates = {}
        for in_flight in (1, 8):
            url = args.database or f"sqlite:///{Path(folder) / f'deliver-{in_flight}.db'}"
            rates[in_flight] = rate(url, args.messages, in_flight, server)
            print(f"in_flight {in_flight}: {rates[in_flight]:.0f} msg/s")
    server.shutdown()
    print(
        f"delivery: ratio {rates[1] / rates[8]:.2f} (in_flight 1: {rates[1]:.0f} msg/s; in_flight 8: "
        f"{rates[8]:.0f} msg/s; gateway latency {args.latency * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
