"""Round-robin loops over GPUs on one thread each, and the watchdog that keeps them isolated.

A wedged driver call cannot be cancelled from Python, and one thread per GPU per job costs a
wake-up per GPU per period (at 72 GPUs and 20 Hz that alone is several percent of a core). So each
job (health poll, power sampling) runs as one loop that visits every GPU in turn, and a watchdog
thread watches the call in flight: a call that runs past the loop's deadline is abandoned. Its GPU
is set aside as hung, and a fresh thread takes the loop over from the next GPU, so the other GPUs
lose at most one deadline's worth of readings. The abandoned thread finishes its call whenever the
driver lets it, hands the GPU back and exits. Threads therefore stay at one per loop, plus one per
call that is hung at that moment (a hung GPU is skipped, so it holds at most one per loop).

Ownership is guarded by one lock: only the loop's current thread starts work, and an abandoned
thread only finishes the call it was in, on a GPU the current thread skips, so no two threads ever
work on the same GPU at once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Generic, Sequence, TypeVar

log = logging.getLogger("rasd.loops")

T = TypeVar("T")

SLEEP_UNDER = 0.5  # seconds: a shorter wait is a plain sleep (see pause)


def pause(stop: threading.Event, seconds: float) -> bool:
    """Wait ``seconds``, or until ``stop`` is set where the wait is long; True once stopped.

    A wait shorter than ``SLEEP_UNDER`` is a plain ``time.sleep`` and a stop is seen when it
    ends: an ``Event.wait`` allocates and takes a lock per wait, and its wake-up costs about
    twice a sleep's in CPU time (measured on a virtual machine, where every wake-up is dear),
    while the power loop waits 12.5 times a second."""
    if seconds < SLEEP_UNDER:
        time.sleep(seconds)
        return stop.is_set()
    return stop.wait(seconds)


class GpuLoop(Generic[T]):
    """Calls ``work(item)`` for every item in turn, one round every ``interval`` seconds.

    ``after_round`` runs on the loop's thread after each full round (e.g. to hand a round's
    readings on in one call). ``ready(item, now)``, where given, is asked first on the loop's
    thread with the round's start on the loop's clock, and an item it turns down is passed over
    without the watchdog's bookkeeping (the power sampler skips some GPUs some rounds).
    ``interval`` and ``deadline`` may be changed while running (reload).
    """

    def __init__(
        self,
        name: str,
        items: Sequence[T],
        work: Callable[[T], object],
        interval: float,
        deadline: float,
        after_round: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        ready: Callable[[T, float], bool] | None = None,
    ):
        self.name = name
        self.items = list(items)
        self.interval = interval
        self.deadline = deadline
        self._work = work
        self._after_round = after_round
        self._ready = ready
        self._clock = clock
        self._lock = threading.Lock()
        self._gen = 0  # the generation of the thread that owns the loop
        self._current: tuple[int, int, float] | None = None  # (generation, position, started)
        self._hung: set[int] = set()  # positions whose call is in flight on an abandoned thread
        self._threads: list[threading.Thread] = []
        self.stop_event = threading.Event()
        self.abandoned = 0  # threads given up on, since start
        self.failures = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._spawn(0, self._clock())

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float) -> None:
        """Wait for the loop's threads; hung ones are daemons and are not waited for past this."""
        end = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.0, end - time.monotonic()))

    def hung(self) -> frozenset[T]:
        """Items whose call is in flight on an abandoned thread right now."""
        with self._lock:
            return frozenset(self.items[i] for i in self._hung)

    def _spawn(self, pos: int, next_at: float) -> None:
        """Start a thread that owns the loop from ``pos`` (caller holds the lock)."""
        self._gen += 1
        t = threading.Thread(
            target=self._run, args=(self._gen, pos, next_at), name=f"rasd-{self.name}", daemon=True
        )
        self._threads = [x for x in self._threads if x.is_alive()]
        self._threads.append(t)
        t.start()

    # -- the loop -----------------------------------------------------------------------------

    def _run(self, gen: int, pos: int, next_at: float) -> None:
        lock, items, clock, ready, hung = self._lock, self.items, self._clock, self._ready, self._hung
        while not self.stop_event.is_set():
            now = clock()
            for i in range(pos, len(items)):
                # an abandoned thread hands its GPU back (leaves _hung) only after its call has
                # returned, so a GPU read outside the lock as not hung is this thread's to ask
                if ready is not None and (i in hung or not ready(items[i], now)):
                    continue
                with lock:
                    if gen != self._gen:
                        return
                    if i in self._hung:
                        continue
                    self._current = (gen, i, clock())
                try:
                    self._work(items[i])
                except Exception as e:  # noqa: BLE001 - a loop never dies; the failure is counted
                    self.failures += 1
                    if self.failures == 1:
                        log.exception("event=loop_work_failed loop=%s error=%r", self.name, str(e))
                with lock:
                    if gen != self._gen:  # abandoned while in the call: hand the GPU back, leave
                        self._hung.discard(i)
                        return
                    self._current = None
            pos = 0
            if self._after_round is not None:
                try:
                    self._after_round()
                except Exception as e:  # noqa: BLE001
                    self.failures += 1
                    if self.failures == 1:
                        log.exception("event=loop_round_failed loop=%s error=%r", self.name, str(e))
            next_at += self.interval
            now = clock()
            if next_at < now:  # overran: skip the missed rounds instead of bursting
                next_at = now + self.interval
            pause(self.stop_event, max(0.0, next_at - now))

    def overdue_at(self, now: float) -> float:
        """The earliest time a call of this loop can run past its deadline: the call in flight's
        start plus the deadline, or, with none in flight, a call starting now."""
        cur = self._current  # one reference read: the tuple is replaced whole, never changed
        return (cur[2] if cur is not None else now) + self.deadline

    def check(self, now: float | None = None) -> int | None:
        """Watchdog: abandon a call running past the deadline; returns its position, else None."""
        now = self._clock() if now is None else now
        with self._lock:
            cur = self._current
            if cur is None or self.stop_event.is_set():
                return None
            gen, pos, started = cur
            if gen != self._gen or now - started <= self.deadline:
                return None
            self._hung.add(pos)
            self._current = None
            self.abandoned += 1
            # the new owner finishes this round from the next item, on the old round's schedule
            self._spawn(pos + 1, started)
        log.warning(
            "event=call_hung loop=%s item=%d deadline_seconds=%.2f action=continued_on_new_thread",
            self.name, pos, self.deadline,
        )
        return pos


class Watchdog:
    """One thread that checks every loop when a call could first be past its deadline.

    It sleeps until the earliest moment any loop's call could be overdue (the call in flight's
    start plus the deadline, or a deadline from now), so a hung call is given up about one
    deadline after it started, and an idle watchdog wakes once a deadline (4 times a second for
    the power sampler's 0.25 s), not several times."""

    MIN_SLEEP = 0.01  # seconds: never spin, whatever the deadlines
    SLACK = 0.002  # wake just after the deadline, not just before it

    def __init__(self, loops: Sequence[GpuLoop], clock: Callable[[], float] = time.monotonic):
        self.loops = list(loops)
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def next_check(self, now: float) -> float:
        """Seconds from ``now`` to the next check."""
        if not self.loops:
            return 1.0
        at = min(lp.overdue_at(now) for lp in self.loops)
        longest = max(lp.deadline for lp in self.loops)  # bounded even where the clocks disagree
        return min(longest, max(self.MIN_SLEEP, at - now + self.SLACK))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rasd-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def check(self) -> None:
        now = self._clock()
        for lp in self.loops:
            lp.check(now)

    def _run(self) -> None:
        while True:
            self.check()
            if self._stop.wait(self.next_check(self._clock())):  # a stop ends it at once
                return
