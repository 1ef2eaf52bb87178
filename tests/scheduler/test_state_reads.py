"""The scheduler's state, read every tick, shows each change of its ledger: its own writes and a
commit by another connection to the same store (the CLI's, when no daemon answered it)."""

from __future__ import annotations

from pathlib import Path

from rasd.scheduler.settings import SchedulerSettings
from rasd.scheduler.build import build_service
from rasd.scheduler.ledger import Ledger


def test_state_follows_the_ledger_whoever_wrote_it(tmp_path: Path) -> None:
    db = str(tmp_path / "rasd.db")
    svc = build_service(SchedulerSettings(), False, db, hostname="gpu-0", synchronous=True)
    try:
        first = svc.state()
        assert not first.out_by_rasd and not first.breaker_tripped and first.deferred == ()
        assert svc.state().deferred == ()  # read again with nothing written: the same answer
        svc._trip(1000.0, "too many nodes out")  # a write through the service's own ledger
        tripped = svc.state()
        assert tripped.breaker_tripped and tripped.breaker_why == "too many nodes out"
        other = Ledger(db)  # another connection, as the CLI opens when no daemon answers
        other.put("node", {"out": True, "reason": "xid 79", "since": 1001.0})
        other.defer({"time": 1002.0, "gpu": 3, "link": None, "fault": "xid"}, {}, "breaker", 1002.0)
        other.close()
        now = svc.state()
        assert now.out_by_rasd and now.reason == "xid 79" and now.out_since_wall == 1001.0
        assert [(why, tries) for why, _, tries, _ in now.deferred] == [("breaker", 1)]
        svc.reset_breaker("ops")
        assert not svc.state().breaker_tripped
        assert not first.out_by_rasd and first.deferred == ()  # a state handed out stays as it was
    finally:
        svc.close()
