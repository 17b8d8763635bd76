"""The daemon's wall clock stepped back an hour and forward again while it delivers (libfaketime).

A real ``flowctl run`` runs under libfaketime with its offset read from a control file at every
clock read (``FAKETIME_TIMESTAMP_FILE`` + ``FAKETIME_NO_CACHE``), so the test moves the daemon's
clock while it runs; its monotonic clock is left alone. SMS go to a real HTTP gateway on two
channels, one with ``rate: 5/s``. Before the step back there are messages waiting for a retry and
a backlog of pending ones; after it, new messages are written. Everything must arrive within
seconds, not after the hour the clock went back, and after the step forward nothing arrives twice.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowctl.ports import Store
from flowctl.store import open_store
from flowctl.testing import Daemon, wait_for
from tests.daemon.configs import deal_config, http_channel, sales_pipeline
from tests.reliability.gateway import Gateway, serve

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
WAIT = 60.0  # seconds of real time for what must happen "at once" (the fault waits 3600)

# libfaketime 0.9.10 answers EINVAL to clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) when the
# monotonic clock is not faked, which is how Python's time.sleep sleeps: sleep in select instead.
SITECUSTOMIZE = """\
import select
import time


def _sleep(seconds: float) -> None:
    if seconds > 0:
        select.select([], [], [], seconds)


time.sleep = _sleep
"""

RULES = """\
        - {name: hello, action: send_sms, channel: sms, text: "Chao", to: "{{ record.phone }}"}
        - {name: promo, action: send_sms, channel: bulk, text: "Khuyen mai", to: "{{ record.phone }}"}
"""


def config(url: str) -> str:
    """Two SMS channels on the gateway, ``bulk`` with a rate, and a rule sending on each."""
    channels = http_channel("sms", f"{url}/sms") + "---\n" + http_channel("bulk", f"{url}/bulk", "  rate: 5/s\n")
    return deal_config("    phone: phone\n", then=f"{channels}---\n{sales_pipeline(RULES)}")


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with serve() as gw:
        yield gw


def test_a_clock_stepped_back_and_forward_an_hour_stalls_nothing_and_sends_nothing_twice(
    tmp_path: Path, gateway: Gateway, figures: Callable[..., None]
) -> None:
    if not LIBFAKETIME.exists():
        pytest.skip(f"libfaketime is not installed ({LIBFAKETIME} is missing; apt-get install libfaketime)")
    control = tmp_path / "faketime"
    control.write_text("+0\n")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    root = tmp_path / "config"
    root.mkdir()
    (root / "flowctl.yaml").write_text(config(gateway.url))
    database = f"sqlite:///{tmp_path / 'flowctl.db'}"
    env = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(control),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FLOWCTL_RETRY_BASE": "4",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH", "")])),
    }
    daemon = Daemon(root / "flowctl.yaml", database, env=env).start()
    store: Store = open_store(database)

    def put(prefix: str, count: int) -> None:
        for i in range(count):
            answer = daemon.put("deal", f"{prefix}{i}", {"title": f"{prefix}{i}", "phone": f"09{i:08d}"})
            assert answer.status_code in (200, 202), answer.text

    def outbox(status: str) -> int:
        return len(store.list_outbox(limit=10_000, status=status))

    try:
        put("a", 5)  # the rate window fills with sends at the old clock's times
        wait_for(lambda: len(gateway.keys()) == 10, WAIT, "the first 10 messages")

        gateway.fail = 2  # the next two sends fail: retries stored at times of the old clock
        put("r", 1)
        wait_for(lambda: outbox("retry") == 2, WAIT, "two retries")
        gateway.open.clear()  # the gateway stalls: a backlog stays pending
        put("p", 20)
        wait_for(lambda: len(store.list_outbox(limit=10_000)) == 52, WAIT, "the backlog stored")

        control.write_text("-3600\n")  # the clock goes back an hour
        put("n", 10)  # written after the step
        gateway.open.set()
        took = wait_for(lambda: len(gateway.keys()) == 72, WAIT, "every message after the step back")
        assert outbox("held") == outbox("retry") == 0

        control.write_text("+0\n")  # and forward an hour again
        put("f", 10)
        took_forward = wait_for(lambda: len(gateway.keys()) == 92, WAIT, "every message after the step forward")
        time.sleep(2)  # anything sent twice would arrive now
        copies = {key: n for key, n in Counter(gateway.keys()).items() if n > 1}
        assert copies == {}, f"sent twice: {copies}"
        assert len(gateway.keys("/bulk")) == 46  # the rate channel kept sending
        assert "the clock went back" in daemon.output()
        figures(
            after_step_back_s=round(took, 1),
            after_step_forward_s=round(took_forward, 1),
            messages=len(gateway.keys()),
            copies=0,
        )
    finally:
        store.close()
        daemon.stop_quietly()
