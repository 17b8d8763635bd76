"""One hanging gateway beside a healthy one: does the healthy channel keep its pace?

Two real HTTP gateways on loopback: ``mail`` answers in ``--latency`` seconds, ``sms`` the same
but hangs ``--hang`` seconds on every ``--every``-th request. The deliverer's loop (``run``, at the
default ``sends_in_flight: 1``) over a SQLite store sends ``--messages`` to each, interleaved in
the outbox. The healthy channel's rate beside the hanging one is compared with its rate alone;
the last line gives the ratio (1.00: the hanging gateway costs the other channel nothing):

    slow gateway: ratio 0.97 (mail beside a hanging sms: 150 msg/s; alone: 155 msg/s; sms: 9 msg/s)

Run: ``python bench/bench_slow_gateway.py [--messages N] [--hang S] [--every N] [--latency S]``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from support import gateway, sender

from flowctl.channels.http import HttpSender
from flowctl.engine.state import Effect, Step
from flowctl.ports import Processed, Store
from flowctl.runtime.daemon.clock import SystemClock
from flowctl.runtime.delivery.deliverer import Deliverer
from flowctl.store import open_store


def sent_by(store: Store, channel: str) -> int:
    return sum(1 for r in store.list_outbox(limit=100_000, status="sent") if r.channel == channel)


def run(url: str, messages: int, channels: dict[str, HttpSender]) -> dict[str, float]:
    """Messages per second of each channel, each from the start until its last message was sent."""
    store = open_store(url)
    effects = [
        Effect(
            key=f"{name}-{i}",
            action="send_sms",
            run_id="r",
            object="deal",
            record_id=str(i),
            channel=name,
            params={"to": f"09{i:08d}", "text": "Khuyen mai"},
        )
        for i in range(messages)
        for name in channels
    ]
    store.commit_batch([Processed(step=Step(effects=effects))], datetime.now(UTC))
    deliverer = Deliverer(store, channels, SystemClock(), owner="bench", rng=random.Random(1))
    stop = threading.Event()
    loop = threading.Thread(target=deliverer.run, args=(stop,), kwargs={"poll_interval": 0.05})
    started = time.perf_counter()
    loop.start()
    done: dict[str, float] = {}
    while len(done) < len(channels):
        for name in channels:
            if name not in done and sent_by(store, name) == messages:
                done[name] = time.perf_counter() - started
        time.sleep(0.02)
    stop.set()
    loop.join()
    store.close()
    return {name: messages / seconds for name, seconds in done.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="messages per channel")
    parser.add_argument("--latency", type=float, default=0.005, help="seconds a gateway takes per message")
    parser.add_argument("--hang", type=float, default=1.0, help="seconds the sms gateway hangs")
    parser.add_argument("--every", type=int, default=10, help="the sms gateway hangs on every N-th request")
    args = parser.parse_args()
    healthy, hanging = gateway(args.latency), gateway(args.latency, args.hang, args.every)
    with tempfile.TemporaryDirectory() as folder:
        alone = run(f"sqlite:///{Path(folder) / 'alone.db'}", args.messages, {"mail": sender("mail", healthy)})
        print(f"mail alone: {alone['mail']:.0f} msg/s")
        beside = run(
            f"sqlite:///{Path(folder) / 'beside.db'}",
            args.messages,
            {"sms": sender("sms", hanging), "mail": sender("mail", healthy)},
        )
        print(f"mail beside a hanging sms: {beside['mail']:.0f} msg/s; sms {beside['sms']:.1f} msg/s")
    healthy.shutdown()
    hanging.shutdown()
    print(
        f"slow gateway: ratio {beside['mail'] / alone['mail']:.2f} (mail beside a hanging sms: "
        f"{beside['mail']:.0f} msg/s; alone: {alone['mail']:.0f} msg/s; sms: {beside['sms']:.1f} msg/s)"
    )


if __name__ == "__main__":
    main()
