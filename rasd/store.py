"""rasd's memory: faults, decisions, remedies, actions and SDC results in SQLite.

One connection guarded by a lock (the daemon's threads share it). WAL mode with
``synchronous=FULL``: WAL alone already survives a kill -9 (a commit is in the log before
``commit()`` returns), and FULL adds an fsync per commit so a power cut or the node reboot that
rasd itself may request does not lose the last decisions. Writes are rare (faults, not samples),
so the fsync costs nothing that matters. The schema version is ``PRAGMA user_version``; each
migration runs once, in order, inside a transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from rasd.model import FaultEvent, FaultKind
from rasd.paths import parent_dir

# Each entry takes the schema from version i to i + 1. Never edit a shipped entry: append.
MIGRATIONS: tuple[str, ...] = (
    # 1: the ladder's history
    """
    CREATE TABLE faults (
        id INTEGER PRIMARY KEY, time_wall REAL NOT NULL, gpu INTEGER NOT NULL, link INTEGER,
        kind TEXT NOT NULL, details TEXT NOT NULL);
    CREATE INDEX faults_time ON faults(time_wall);
    CREATE INDEX faults_gpu ON faults(gpu, time_wall);
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY, time_wall REAL NOT NULL, gpu INTEGER NOT NULL, link INTEGER,
        rung TEXT NOT NULL, scope TEXT NOT NULL, fault TEXT NOT NULL, source TEXT NOT NULL,
        reason TEXT NOT NULL, body TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'open', closed_wall REAL, outcome TEXT);
    CREATE INDEX decisions_gpu ON decisions(gpu, time_wall);
    CREATE INDEX decisions_open ON decisions(state);
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY, time_wall REAL NOT NULL, gpu INTEGER NOT NULL, link INTEGER,
        kind TEXT NOT NULL, argv TEXT NOT NULL, result TEXT NOT NULL, exit_code INTEGER,
        seconds REAL, output_tail TEXT NOT NULL DEFAULT '');
    """,
    # 2: the SDC workflow's accusations and check results
    """
    CREATE TABLE accusations (
        id INTEGER PRIMARY KEY, gpu INTEGER NOT NULL, reason TEXT NOT NULL,
        opened_wall REAL NOT NULL, closed_wall REAL, verdict TEXT, evidence TEXT);
    CREATE INDEX accusations_gpu ON accusations(gpu, opened_wall);
    CREATE TABLE sdc_results (
        id INTEGER PRIMARY KEY, time_wall REAL NOT NULL, gpu INTEGER NOT NULL,
        "check" TEXT NOT NULL, level INTEGER NOT NULL, result TEXT NOT NULL, seconds REAL,
        gflops REAL, evidence TEXT NOT NULL);
    CREATE INDEX sdc_results_gpu ON sdc_results(gpu, time_wall);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# a person's close of open decisions, as stored (details as ``json.dumps(sort_keys=True)``
# writes them; the action name is rasd.ladder.escalate.OPERATOR_CLOSE)
_OPERATOR_CLOSE = "kind='remedy' AND details LIKE '%\"action\": \"operator_close\"%'"


# (decision time, gpu, link, fault, outcome, closed time[, rung]): the natural key of an open
# decision and how it ended; with the rung, only a row at that rung closes (a decision rebuilt
# lower, from less history, must never end the stored one of the same key)
DecisionEnd = (tuple[float, int, "int | None", str, str, float]
               | tuple[float, int, "int | None", str, str, float, "str | None"])


class StoreError(RuntimeError):
    """The store cannot be opened or used; the message says what to do."""


@dataclass(frozen=True, slots=True)
class StoredFault:
    id: int
    event: FaultEvent


@dataclass(frozen=True, slots=True)
class StoredDecision:
    id: int
    body: dict[str, Any]  # Decision.to_dict()
    state: str  # open, or how it ended: remedied, superseded, cleared, expired,
    # closed_by_operator
    closed_wall: float | None


@dataclass(frozen=True, slots=True)
class ActionRecord:
    id: int
    time_wall: float
    gpu: int
    link: int | None
    kind: str
    argv: tuple[str, ...]
    result: str  # ok, failed, timeout, error, skipped
    exit_code: int | None
    seconds: float | None
    output_tail: str


@dataclass(frozen=True, slots=True)
class Accusation:
    id: int
    gpu: int
    reason: str
    opened_wall: float
    closed_wall: float | None
    verdict: str | None
    evidence: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class SdcResult:
    id: int
    time_wall: float
    gpu: int
    check: str
    level: int
    result: str
    seconds: float | None
    gflops: float | None
    evidence: dict[str, Any]


class Store:
    """SQLite history at ``path`` (":memory:" for replay and tests). Thread-safe."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        if self.path != ":memory:":
            if os.path.isdir(self.path):
                raise StoreError(f"the state path {self.path} is a directory; set daemon.state_path to a "
                                 f"file inside it, such as {os.path.join(self.path, 'rasd.db')}")
            try:
                os.makedirs(parent_dir(self.path), exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the directory of {self.path} ({e.strerror}); "
                                 "set daemon.state_path to a writable place") from None
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                       timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open the store {self.path} ({e}); move the file aside "
                             "to start a fresh history") from None

    # ------------------------------------------------------------------ schema

    @property
    def version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self._lock:
            current = self.version
            if current > SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {current}, newer than this "
                                 f"rasd ({SCHEMA_VERSION}); upgrade rasd or use another state_path")
            for i in range(current, SCHEMA_VERSION):
                with self._tx():
                    for stmt in MIGRATIONS[i].split(";"):
                        if stmt.strip():
                            self._db.execute(stmt)
                    self._db.execute(f"PRAGMA user_version={i + 1}")

    def _tx(self) -> "_Tx":
        return _Tx(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ faults

    def add_fault(self, event: FaultEvent) -> int:
        with self._lock, self._tx():
            return self._insert_fault(event)

    def _insert_fault(self, event: FaultEvent) -> int:
        cur = self._db.execute(
            "INSERT INTO faults(time_wall, gpu, link, kind, details) VALUES (?,?,?,?,?)",
            (event.time_wall, event.gpu, event.link, event.kind.value,
             json.dumps(dict(event.details), sort_keys=True, default=str)))
        return int(cur.lastrowid or 0)

    def faults(self, gpu: int | None = None, since: float | None = None,
               limit: int | None = None) -> list[StoredFault]:
        sql, args = _where("SELECT id, time_wall, gpu, link, kind, details FROM faults",
                           gpu, since)
        sql += " ORDER BY time_wall, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [StoredFault(r[0], FaultEvent(r[1], r[2], FaultKind(r[4]), r[3], json.loads(r[5])))
                for r in rows]

    def operator_closes(self, gpu: int | None = None) -> list[StoredFault]:
        """A person's closes (remedies whose action is operator_close: reason, by), oldest
        first."""
        sql, args = _where("SELECT id, time_wall, gpu, link, kind, details FROM faults", gpu, None)
        sql += (" AND" if args else " WHERE") + " " + _OPERATOR_CLOSE
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY time_wall, id", args).fetchall()
        return [StoredFault(r[0], FaultEvent(r[1], r[2], FaultKind(r[4]), r[3], json.loads(r[5])))
                for r in rows]

    def last_fault_time(self) -> float | None:
        """When the newest stored event happened (Unix s), None for an empty history. A person's
        close (a remedy whose action is operator_close) is no sign that rasd was watching: it
        can be given while the daemon is down, so it does not count."""
        with self._lock:
            row = self._db.execute(
                f"SELECT MAX(time_wall) FROM faults WHERE NOT ({_OPERATOR_CLOSE})").fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # ------------------------------------------------------------------ decisions

    def add_decision(self, body: Mapping[str, Any]) -> int:
        with self._lock, self._tx():
            return self._insert_decision(body)

    def _insert_decision(self, body: Mapping[str, Any]) -> int:
        cur = self._db.execute(
            "INSERT INTO decisions(time_wall, gpu, link, rung, scope, fault, source, reason,"
            " body) VALUES (?,?,?,?,?,?,?,?,?)",
            (body["time"], body["gpu"], body["link"], body["rung"], body["scope"],
             body["fault"], body["source"], body["reason"], json.dumps(body, sort_keys=True)))
        return int(cur.lastrowid or 0)

    def close_decision(self, time_wall: float, gpu: int, link: int | None, fault: str,
                       outcome: str, closed_wall: float, rung: str | None = None) -> int:
        """Close the open decision with this natural key (and ``rung``, its label, where given);
        returns rows changed (0 or 1)."""
        with self._lock, self._tx():
            return self._close_decision(time_wall, gpu, link, fault, outcome, closed_wall, rung)

    def _close_decision(self, time_wall: float, gpu: int, link: int | None, fault: str,
                        outcome: str, closed_wall: float, rung: str | None = None) -> int:
        cur = self._db.execute(
            "UPDATE decisions SET state=?, closed_wall=?, outcome=? WHERE state='open' AND "
            "time_wall=? AND gpu=? AND link IS ? AND fault=? AND (? IS NULL OR rung=?)",
            (outcome, closed_wall, outcome, time_wall, gpu, link, fault, rung, rung))
        return cur.rowcount

    def record_step(self, event: FaultEvent | None, opened: Sequence[Mapping[str, Any]],
                    ended: Sequence[DecisionEnd]) -> None:
        """One event, the decisions it opened and those it ended, in ONE transaction: after a
        crash the history holds all of it or none of it (a restart replays the event again)."""
        with self._lock, self._tx():
            if event is not None:
                self._insert_fault(event)
            for body in opened:
                self._insert_decision(body)
            for x in ended:
                self._close_decision(*x)

    def decisions(self, gpu: int | None = None, since: float | None = None,
                  open_only: bool = False, limit: int | None = None) -> list[StoredDecision]:
        sql, args = _where("SELECT id, body, state, closed_wall FROM decisions", gpu, since)
        if open_only:
            sql += (" AND" if args else " WHERE") + " state='open'"
        sql += " ORDER BY time_wall, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [StoredDecision(r[0], json.loads(r[1]), r[2], r[3]) for r in rows]

    def oldest_open_decision(self) -> float | None:
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(time_wall) FROM decisions WHERE state='open'").fetchone()
        return row[0] if row and row[0] is not None else None

    # ------------------------------------------------------------------ actions

    def add_action(self, time_wall: float, gpu: int, link: int | None, kind: str,
                   argv: tuple[str, ...], result: str, exit_code: int | None,
                   seconds: float | None, output_tail: str) -> int:
        with self._lock, self._tx():
            cur = self._db.execute(
                "INSERT INTO actions(time_wall, gpu, link, kind, argv, result, exit_code, seconds,"
                " output_tail) VALUES (?,?,?,?,?,?,?,?,?)",
                (time_wall, gpu, link, kind, json.dumps(list(argv)), result, exit_code, seconds,
                 output_tail))
            return int(cur.lastrowid or 0)

    def actions(self, gpu: int | None = None, since: float | None = None) -> list[ActionRecord]:
        sql, args = _where("SELECT id, time_wall, gpu, link, kind, argv, result, exit_code, "
                           "seconds, output_tail FROM actions", gpu, since)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY time_wall, id", args).fetchall()
        return [ActionRecord(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), r[6], r[7],
                             r[8], r[9]) for r in rows]

    # ------------------------------------------------------------------ SDC

    def add_accusation(self, gpu: int, reason: str, time_wall: float) -> int:
        with self._lock, self._tx():
            cur = self._db.execute(
                "INSERT INTO accusations(gpu, reason, opened_wall) VALUES (?,?,?)",
                (gpu, reason, time_wall))
            return int(cur.lastrowid or 0)

    def close_accusation(self, id: int, verdict: str, evidence: Mapping[str, Any],
                         time_wall: float) -> None:
        with self._lock, self._tx():
            cur = self._db.execute(
                "UPDATE accusations SET closed_wall=?, verdict=?, evidence=? WHERE id=?",
                (time_wall, verdict, json.dumps(dict(evidence), sort_keys=True, default=str), id))
            if cur.rowcount != 1:
                raise KeyError(f"no accusation with id {id}")

    def accusations(self, gpu: int | None = None, since: float | None = None) -> list[Accusation]:
        sql, args = _where("SELECT id, gpu, reason, opened_wall, closed_wall, verdict, evidence "
                           "FROM accusations", gpu, since, time_col="opened_wall")
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY opened_wall, id", args).fetchall()
        return [Accusation(r[0], r[1], r[2], r[3], r[4], r[5],
                           json.loads(r[6]) if r[6] is not None else None) for r in rows]

    def add_sdc_result(self, gpu: int, check: str, level: int, result: str,
                       seconds: float | None, gflops: float | None,
                       evidence: Mapping[str, Any], time_wall: float) -> int:
        with self._lock, self._tx():
            cur = self._db.execute(
                'INSERT INTO sdc_results(time_wall, gpu, "check", level, result, seconds, gflops,'
                " evidence) VALUES (?,?,?,?,?,?,?,?)",
                (time_wall, gpu, check, int(level), result, seconds, gflops,
                 json.dumps(dict(evidence), sort_keys=True, default=str)))
            return int(cur.lastrowid or 0)

    def sdc_results(self, gpu: int | None = None, limit: int = 100) -> list[SdcResult]:
        """The newest ``limit`` results, oldest first."""
        sql, args = _where('SELECT id, time_wall, gpu, "check", level, result, seconds, gflops, '
                           "evidence FROM sdc_results", gpu, None)
        sql += f" ORDER BY time_wall DESC, id DESC LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [SdcResult(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]))
                for r in reversed(rows)]


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (autocommit connection)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        self.db.execute("COMMIT" if et is None else "ROLLBACK")


def _where(sql: str, gpu: int | None, since: float | None,
           time_col: str = "time_wall") -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if gpu is not None:
        clauses.append("gpu=?")
        args.append(gpu)
    if since is not None:
        clauses.append(f"{time_col}>=?")
        args.append(since)
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return sql, args

