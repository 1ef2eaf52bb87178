"""What rasd did through the scheduler, kept across restarts.

The tables live in the daemon's SQLite file (their own connection, created when absent, outside
the ladder's versioned schema so the two evolve apart). On start the service compares them
with what the scheduler says and trusts the scheduler where they disagree: a drain a person
resumed or re-labelled is no longer rasd's.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scheduler_kv (key TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scheduler_deferred (
    key TEXT PRIMARY KEY, decision TEXT NOT NULL, info TEXT NOT NULL, why TEXT NOT NULL,
    first_wall REAL NOT NULL, last_wall REAL NOT NULL, tries INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS scheduler_jobs (
    id INTEGER PRIMARY KEY, time_wall REAL NOT NULL, gpu INTEGER NOT NULL, link INTEGER,
    fault TEXT NOT NULL, jobs TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS scheduler_jobs_gpu ON scheduler_jobs(gpu, time_wall);
"""


@dataclass(frozen=True, slots=True)
class Deferred:
    key: str
    decision: dict[str, Any]
    info: dict[str, Any]
    why: str  # budget, breaker, scheduler_error
    first_wall: float
    last_wall: float
    tries: int


def decision_key(body: dict[str, Any]) -> str:
    return f"{body['time']!r}|{body['gpu']}|{body.get('link')}|{body['fault']}"


class Ledger:
    def __init__(self, path: str):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._lock:
            self._db.executescript(_SCHEMA)
        self._writes = 0  # this connection's writes; PRAGMA data_version counts the others'

    def version(self) -> tuple[int, int]:
        """Changes whenever the ledger may have: a write through this object, or a commit by
        any other connection (SQLite's ``PRAGMA data_version``). Lets a reader skip the
        queries while nothing was written."""
        with self._lock:
            row = self._db.execute("PRAGMA data_version").fetchone()
            return self._writes, int(row[0])

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM scheduler_kv WHERE key=?", (key,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put(self, key: str, body: dict[str, Any] | None) -> None:
        with self._lock:
            self._writes += 1
            if body is None:
                self._db.execute("DELETE FROM scheduler_kv WHERE key=?", (key,))
            else:
                self._db.execute("INSERT OR REPLACE INTO scheduler_kv(key, body) VALUES (?,?)",
                                 (key, json.dumps(body, sort_keys=True)))

    # -- deferred decisions

    def defer(self, decision: dict[str, Any], info: dict[str, Any], why: str,
              now: float) -> Deferred:
        key = decision_key(decision)
        with self._lock:
            self._writes += 1
            row = self._db.execute("SELECT first_wall, tries FROM scheduler_deferred WHERE key=?",
                                   (key,)).fetchone()
            first, tries = (now, 0) if row is None else (float(row[0]), int(row[1]))
            self._db.execute(
                "INSERT OR REPLACE INTO scheduler_deferred(key, decision, info, why, first_wall,"
                " last_wall, tries) VALUES (?,?,?,?,?,?,?)",
                (key, json.dumps(decision), json.dumps(info), why, first, now, tries + 1))
        return Deferred(key, decision, info, why, first, now, tries + 1)

    def undefer(self, key: str) -> None:
        with self._lock:
            self._writes += 1
            self._db.execute("DELETE FROM scheduler_deferred WHERE key=?", (key,))

    def deferred(self) -> list[Deferred]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, decision, info, why, first_wall, last_wall, tries "
                "FROM scheduler_deferred ORDER BY first_wall").fetchall()
        return [Deferred(r[0], json.loads(r[1]), json.loads(r[2]), r[3], r[4], r[5], r[6])
                for r in rows]

    # -- jobs hit

    def add_jobs(self, time_wall: float, gpu: int, link: int | None, fault: str,
                 jobs: list[dict[str, Any]]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO scheduler_jobs(time_wall, gpu, link, fault, jobs) VALUES (?,?,?,?,?)",
                (time_wall, gpu, link, fault, json.dumps(jobs, sort_keys=True)))

    def jobs(self, gpu: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql = "SELECT time_wall, gpu, link, fault, jobs FROM scheduler_jobs"
        args: tuple[Any, ...] = ()
        if gpu is not None:
            sql, args = sql + " WHERE gpu=?", (gpu,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY time_wall DESC, id DESC LIMIT ?",
                                    (*args, limit)).fetchall()
        return [{"time": r[0], "gpu": r[1], "link": r[2], "fault": r[3],
                 "jobs": json.loads(r[4])} for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def jobs_by_decision(path: str, gpu: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """Jobs hit, keyed by ``decision_key`` of the decision, read-only (for `rasd history`);
    empty when the store has no such table (scheduler integration never ran)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error:
        return {}
    try:
        sql = "SELECT time_wall, gpu, link, fault, jobs FROM scheduler_jobs"
        rows = db.execute(sql + (" WHERE gpu=?" if gpu is not None else ""),
                          (gpu,) if gpu is not None else ()).fetchall()
    except sqlite3.Error:
        return {}
    finally:
        db.close()
    out: dict[str, list[dict[str, Any]]] = {}
    for t, g, link, fault, jobs in rows:
        out.setdefault(decision_key({"time": t, "gpu": g, "link": link, "fault": fault}),
                       []).extend(json.loads(jobs))
    return out


def job_label(j: dict[str, Any]) -> str:
    """``slurm job 42 (pid 1234)``, ``pod ns/name (pid 5)``, ``pid 7 (no job)``."""
    if j.get("kind") == "slurm":
        return f"slurm job {j['id']} (pid {j['pid']})"
    if j.get("kind") == "kubernetes":
        return f"pod {j.get('name') or j['id']} (pid {j['pid']})"
    return f"pid {j.get('pid')} (no job)"
