"""Round-robin loops over GPUs on one thread each, watching each other for hung calls.

A wedged driver call cannot be cancelled from Python, and one thread per GPU per job costs a
wake-up per GPU per period (at 72 GPUs and 20 Hz that alone is several percent of a core). So each
job (health poll, power sampling) runs as one loop that visits every GPU in turn. A call that runs
past its loop's deadline is abandoned: its GPU is set aside as hung, and a fresh thread takes the
loop over from the next GPU. The abandoned thread finishes its call whenever the driver lets it,
hands the GPU back and exits. Threads therefore stay at one per loop, plus one per call that is
hung at that moment (a hung GPU is skipped, so it holds at most one per loop).

Who gives a call up (``Watchdog``): the other loops, at the start of each of their rounds, and
the daemon's main loop once a pass. A thread of its own would have to wake once a deadline (four
times a second for the power loop's 0.25 s) to see what the loops' own wake-ups already see: a
hung poll is given up by the power loop's next round after its deadline (within 80 ms of it), and
a hung power read by the next health round or main-loop pass (within a health interval of it),
so the other GPUs lose at most that much of their readings. Where the power reads run on a
native thread (rasd.backends.nvml.powerloop), that loop runs no Python between reads: it is only
checked, and a hung poll is given up by the main loop's next pass (or another health loop's
round) instead.

Ownership is guarded by one lock per loop: only the loop's current thread starts work, and an
abandoned thread only finishes the call it was in, on a GPU the current thread skips, so no two
threads ever work on the same GPU at once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Generic, Sequence, TypeVar

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
    without the hang bookkeeping (the power sampler skips some GPUs some rounds).
    ``interval`` and ``deadline`` may be changed while running (reload). ``phase``: the first
    round runs at ``start``, the second ``phase`` + ``interval`` after it, and so on (loops of one
    job started together run their rounds apart instead of contending for the interpreter at the
    same instant, and every GPU still has its first reading at once).
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
        phase: float = 0.0,
    ):
        self.name = name
        self.phase = phase
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
        # run on the loop's thread at the start of each round, with the round's start on the
        # loop's clock (Watchdog.attach: each loop checks the others for hung calls)
        self.before_round: Callable[[float], object] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._spawn(0, self._clock() + self.phase)

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
            before = self.before_round
            if before is not None:
                try:
                    before(now)
                except Exception as e:  # noqa: BLE001
                    self.failures += 1
                    if self.failures == 1:
                        log.exception("event=loop_round_failed loop=%s error=%r", self.name, str(e))
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
    """Gives up calls that run past their loop's deadline, on the threads that are awake anyway.

    It has no thread of its own: ``attach`` has every loop call ``check`` at the start of each of
    its rounds, and the daemon's main loop calls it once a pass, so a call hung on one loop's
    thread is given up by another loop's next round (module docstring). A single loop cannot see
    its own hung call: whoever runs one alone calls ``check`` on its own schedule."""

    def __init__(self, loops: Sequence[GpuLoop | Any], clock: Callable[[], float] = time.monotonic):
        self.loops = list(loops)
        self._clock = clock

    def attach(self) -> None:
        """Have every loop check all the loops at the start of each of its rounds (a loop that
        runs no Python between its reads, the native power loop, is only checked)."""
        for lp in self.loops:
            if isinstance(lp, GpuLoop):
                lp.before_round = self.check

    def check(self, now: float | None = None) -> list[tuple[str, int]]:
        """Give up every call past its deadline now; returns (loop, position) of each."""
        now = self._clock() if now is None else now
        out = []
        for lp in self.loops:
            pos = lp.check(now)
            if pos is not None:
                out.append((lp.name, pos))
        return out
