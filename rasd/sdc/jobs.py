"""One check the SDC service runs in a worker thread, as its clients see it."""

from __future__ import annotations

from typing import Any, Sequence

# A finished job is kept until its client has read the result, then among the last few for late
# readers; a result nobody fetched is dropped after an hour. Only unfinished or unread jobs count
# against the cap, so many concurrent clients each get their own job's result.
JOBS_KEPT = 16
UNREAD_KEEP_SECONDS = 3600.0
MAX_OPEN_JOBS = 256


class Job:
    """A check in a worker thread: its progress, then its result or error until a client reads it."""

    def __init__(self, job_id: int, kind: str, gpus: Sequence[int]):
        self.id, self.kind, self.gpus = job_id, kind, list(gpus)
        self.progress: tuple[int, int, str] = (0, 0, "queued")
        self.done = False
        self.done_at: float | None = None  # monotonic
        self.read = False  # a client fetched the finished result
        self.result: dict[str, Any] | None = None
        self.error: str | None = None

    def evictable(self, now: float) -> bool:
        return self.done and (self.read or (self.done_at is not None and now - self.done_at > UNREAD_KEEP_SECONDS))

    def to_dict(self) -> dict[str, Any]:
        done, total, label = self.progress
        return {"job": self.id, "kind": self.kind, "gpus": self.gpus, "done": self.done,
                "progress": {"done": done, "total": total, "step": label},
                "report": self.result, "error": self.error}
