"""Health pollers: each GPU's poll state, polled by a few shared loops that watch for hung calls.

A wedged driver call cannot be cancelled from Python. Each GPU's ``GpuPoller`` publishes its
latest outcome by plain reference assignment; the daemon reads ``view()`` at its own pace and marks
a GPU stale when its poll runs past the deadline. The polls themselves run on a few round-robin
loops (``health_loops``); a poll that hangs is abandoned at the power loop's next round, or the
main loop's next pass where the power reads run natively (rasd.telemetry.loops), so the other
GPUs keep being polled, and the hung GPU rejoins by itself if the call ever returns.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable, Sequence

from rasd.backends.errors import GpuLost
from rasd.backends.nvml import GpuHandle
from rasd.model import GpuIdentity, GpuSample, LostReason
from rasd.telemetry.aggregate import PollView
from rasd.telemetry.loops import GpuLoop

log = logging.getLogger("rasd.poller")


class GpuPoller:
    def __init__(
        self,
        handle: GpuHandle,
        interval: float,
        deadline: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        slow_interval: float = 0.0,
    ):
        """``slow_interval``: seconds between reads of the poll's slow part (counters, NVLink);
        0 reads everything every poll."""
        self.handle = handle
        self.index = handle.index
        self.interval = interval
        self.deadline = deadline
        self.slow_interval = slow_interval
        self._slow_at: float | None = None  # when the slow part was last read
        self._slow_wanted = False
        self._clock = clock
        self._wall = wall
        # published state: each attribute is replaced whole, never mutated in place
        self.identity: GpuIdentity | None = None
        self.sample: GpuSample | None = None
        self.seq = 0
        self.lost: str | None = None
        self.lost_reason: LostReason | None = None
        self.last_update_wall: float | None = None
        self.busy_since: float | None = None
        self.overruns = 0
        self._stall_counted = False
        self.internal_errors = 0

    def poll_once(self) -> None:
        """One poll on the calling thread (the loop's body; also used by one-shot commands)."""
        start = self._clock()
        self.busy_since = start
        try:
            if self.identity is None:
                self.identity = self.handle.identity()
            slow = (
                self._slow_wanted or self._slow_at is None or start - self._slow_at >= self.slow_interval
            )
            self._slow_wanted = False
            sample = self.handle.poll(self._wall, slow=slow)
            if self.lost is not None:
                # back from lost: the board in the slot may be another one (its UUID tells the
                # ladder a replaced board); while it was lost, the one last read was kept
                self.handle.forget_identity()
                self.identity = self.handle.identity()
            if slow:
                self._slow_at = start
            self.sample = sample
            self.lost = None
            self.last_update_wall = sample.time_wall
        except GpuLost as e:
            if self.lost is None:
                log.error("event=gpu_lost gpu=%d reason=%s detail=%r", self.index, e.reason.value, e.detail)
            self.lost_reason = e.reason  # before the detail: a reader that sees the detail sees its reason
            self.lost = e.detail
        except Exception as e:  # noqa: BLE001 - a poller never dies; the fault is counted
            self.internal_errors += 1
            if self.internal_errors == 1:
                log.exception("event=poll_failed gpu=%d error=%r", self.index, str(e))
        finally:
            took = self._clock() - start
            if took > self.deadline and not self._stall_counted:
                self.overruns += 1
            self._stall_counted = False
            self.busy_since = None
            self.seq += 1

    def want_slow(self) -> None:
        """Read the slow part at the next poll (an Xid hints that a counter moved)."""
        self._slow_wanted = True

    def view(self) -> PollView:
        now = self._clock()
        busy = self.busy_since
        stalled = busy is not None and now - busy > self.deadline
        if stalled and not self._stall_counted:
            self._stall_counted = True
            self.overruns += 1
            log.warning("event=poll_overrun gpu=%d deadline_seconds=%.2f", self.index, self.deadline)
        return PollView(
            index=self.index,
            identity=self.identity,
            sample=self.sample,
            seq=self.seq,
            lost=self.lost,
            lost_reason=self.lost_reason,
            stalled=stalled,
            last_update_wall=self.last_update_wall,
            overruns=self.overruns,
            errors=self.handle.error_counts(),
            unsupported=self.handle.unsupported(),
        )


GPUS_PER_LOOP = 16  # a health poll is 7 NVML calls a GPU (44 with the slow part): 16 fit 1 s easily
MAX_LOOPS = 4


def health_loops(
    pollers: Sequence[GpuPoller], interval: float, deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> list[GpuLoop[GpuPoller]]:
    """Split the GPUs over ceil(n / 16) loops (at most 4): GPU i goes to loop i mod k.

    More than one loop only where a node has many GPUs, so that slow driver calls (they release
    the GIL) overlap instead of adding up past the poll interval. The loops' rounds start a k-th
    of the interval apart: started together, their Python work contends for the interpreter at the
    same instant (at 72 fake GPUs about 100 hand-overs a second each), while slow calls overlap
    all the same."""
    k = max(1, min(MAX_LOOPS, math.ceil(len(pollers) / GPUS_PER_LOOP)))
    return [
        GpuLoop(f"health{j}", pollers[j::k], GpuPoller.poll_once, interval, deadline, clock=clock,
                phase=j * interval / k)
        for j in range(k)
        if pollers[j::k]
    ]
