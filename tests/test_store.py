"""The SQLite store: schema migration, SDC API, survival of restart and kill -9 mid-write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, Rung
from rasd.store import MIGRATIONS, SCHEMA_VERSION, Store


def test_fresh_store_has_latest_schema_and_wal(tmp_path):
    s = Store(tmp_path / "r.db")
    assert s.version == SCHEMA_VERSION
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()


def test_migrates_forward_keeping_data(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO faults(time_wall, gpu, link, kind, details) VALUES (1, 0, NULL, "
               "'thermal', '{}')")
    db.commit()
    db.close()
    s = Store(path)
    assert s.version == SCHEMA_VERSION
    assert [f.event.kind for f in s.faults()] == [FaultKind.THERMAL]
    assert s.add_accusation(0, "loss spike", 2.0) == 1


def test_sdc_api(tmp_path):
    s = Store(":memory:")
    a = s.add_accusation(3, "nan in loss", 10.0)
    s.add_accusation(1, "other", 20.0)
    s.close_accusation(a, "confirmed", {"bit": 12}, 30.0)
    acc = s.accusations(gpu=3)
    assert acc[0].verdict == "confirmed" and acc[0].evidence == {"bit": 12}
    assert [x.gpu for x in s.accusations(since=15.0)] == [1]
    for i in range(5):
        s.add_sdc_result(3, "gemm_abft", 2, "pass", 1.5, 900.0 + i, {"i": i}, 100.0 + i)
    res = s.sdc_results(gpu=3, limit=2)
    assert [r.evidence["i"] for r in res] == [3, 4] and res[0].gflops == 903.0


def test_ladder_state_survives_restart(tmp_path):
    path = tmp_path / "r.db"
    svc = LadderService(LadderSettings(), ActionSettings(), Store(path), "n", now_wall=0)
    svc.ingest([FaultEvent(100.0, 2, FaultKind.XID, None, {"xid": 79})], 100.0)
    svc.ingest([FaultEvent(110.0, 1, FaultKind.NVLINK, 4, {"link": 4, "state": "down"})], 110.0)
    svc.store.close()
    again = LadderService(LadderSettings(), ActionSettings(), Store(path), "n", now_wall=200.0)
    st = again.state(200.0)
    assert st.gpus[2].rung is Rung.REBOOT_NODE
    assert st.links[(1, 4)].rung is Rung.RESET_GPU
    assert again.store.decisions(open_only=True)


WRITER = textwrap.dedent("""
    import sys
    from rasd.store import Store
    from rasd.model import FaultEvent, FaultKind
    s = Store(sys.argv[1])
    i = 0
    while True:
        s.add_fault(FaultEvent(float(i), i % 8, FaultKind.THERMAL, None, {"n": i}))
        s.add_decision({"time": float(i), "gpu": i % 8, "link": None, "rung": "none",
                        "scope": "gpu", "fault": "thermal", "source": "thermal",
                        "reason": "x" * 200})
        i += 1
        if i == 50:
            print("ready", flush=True)
""")


def test_survives_kill_9_mid_write(tmp_path):
    path = tmp_path / "k.db"
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                         cwd=os.getcwd())
    assert p.stdout.readline().strip() == b"ready"
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    s = Store(path)  # opens, recovers the WAL
    assert s._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    faults = s.faults()
    assert len(faults) >= 50
    assert [f.event.details["n"] for f in faults] == list(range(len(faults)))
    assert len(s.decisions()) in (len(faults), len(faults) - 1)
    s.add_fault(FaultEvent(1e9, 0, FaultKind.GPU_LOST, None, {}))  # still writable
