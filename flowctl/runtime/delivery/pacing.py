"""When the delivery loop starts its next round: at the poll, when a lane finishes, or on a nudge.

A commit that queued messages nudges the loop (:meth:`Pacing.nudge`: the worker after each commit
it ran, inline in the ingest's or claimed, and the engine process's report of its counts), so they
leave at once rather than at the next poll. Rounds a nudge starts are ``NUDGE_GAP`` apart: a daemon taking
hundreds of changes a second delivers in rounds of a few dozen rows, a short pause each for the
requests sharing its core, instead of once a second in a burst of all of them (the requests that
arrived during that burst made the one-client p99), and its messages leave within tens of
milliseconds instead of within a second. A lane that finished starts the next round at once: its
channel may have more rows due, and a quick gateway must not wait for the gap.
"""

from __future__ import annotations

import threading
import time
from typing import Any

#: Seconds from one round's start to the next a nudge starts: at most 20 claim-and-mark pairs a
#: second however many commits nudge, each of them short.
NUDGE_GAP = 0.05


class Pacing:
    """The loop's wake-ups: thread-safe, read by the loop between rounds."""

    def __init__(self) -> None:
        self._wake = threading.Event()  # interrupts a pause: a lane finished, or a nudge
        self._lane_done = False  # a lane finished since this round started
        self._nudged = False  # a commit queued messages since this round started
        self._round_at = 0.0  # time.monotonic() at this round's start

    def round_started(self) -> None:
        self._wake.clear()
        self._lane_done = self._nudged = False
        self._round_at = time.monotonic()

    def nudge(self) -> None:
        if self._nudged:  # set before this round started (it is reset then): its rows are claimed next
            return
        self._nudged = True
        self._wake.set()

    def lane_finished(self, _: Any = None) -> None:
        """A ``Future.add_done_callback`` of a lane."""
        self._lane_done = True
        self._wake.set()

    def pause(self, stop: threading.Event, seconds: float) -> None:
        """Wait ``seconds``, less when ``stop`` is set, a lane finishes or a nudge came (then until
        ``NUDGE_GAP`` after this round's start)."""
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            now = time.monotonic()
            until = min(deadline, self._round_at + NUDGE_GAP) if self._nudged else deadline
            if now >= until or self._lane_done:
                return
            # the flags are read again after the clear: a nudge between the wait and the clear counts
            self._wake.wait(min(until - now, 0.1))
            self._wake.clear()
