"""The fleet-wide disruption budget and the circuit breaker, against a real Slurm whose other
nodes (configured, no slurmd) are drained by ``scontrol`` as other rasds would have."""

from __future__ import annotations

from pathlib import Path

from rasd.scheduler.service import open_decisions
from tests.scheduler.slurmcluster import SlurmCluster
from tests.scheduler.test_slurm import REASON, Node, now_clock, sinfo


def drain(slurm: SlurmCluster, node: str, reason: str) -> None:
    slurm.run("scontrol", "update", f"nodename={node}", "state=drain", f"reason={reason}")


def test_budget_defers_and_the_retry_acts_once_there_is_room(slurm: SlurmCluster,
                                                             tmp_path: Path) -> None:
    drain(slurm, "rasdx1", "rasd: xid 48 gpu 0 -> reset_gpu")
    drain(slurm, "rasdx2", "bios update")  # a person's drain does not count against rasd
    n = Node(slurm, tmp_path / "rasd.db", now_clock(), max_nodes_out="1")
    n.xid79()
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    st = n.sched.state()
    assert [(w, tries) for w, _, tries, _ in st.deferred] == [("budget", 1)]
    assert (st.scope_nodes, st.scope_out, st.budget_limit) == (4, 1, 1)
    assert open_decisions(n.ladder.state(n.clock()))  # the reboot did not run
    n.tick(11)  # still no room: deferred again
    assert n.sched.state().deferred[0][2] == 2
    slurm.run("scontrol", "update", "nodename=rasdx1", "state=resume")
    n.tick(11)
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    assert not n.sched.state().deferred
    assert not open_decisions(n.ladder.state(n.clock()))  # the reboot ran after the drain
    n.close()


def test_a_percent_budget_counts_the_scope(slurm: SlurmCluster, tmp_path: Path) -> None:
    drain(slurm, "rasdx1", "rasd: xid 48 gpu 0 -> reset_gpu")
    n = Node(slurm, tmp_path / "rasd.db", now_clock(), max_nodes_out="50%", breaker_share=0.9)
    n.xid79()  # 1 of 4 out, 50 % allows 2
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    n.close()


def test_breaker_trips_and_holds_until_reset(slurm: SlurmCluster, tmp_path: Path) -> None:
    drain(slurm, "rasdx1", "rasd: xid 79 gpu 0 -> reboot_node")
    drain(slurm, "rasdx2", "rasd: xid 79 gpu 5 -> reboot_node")
    n = Node(slurm, tmp_path / "rasd.db", now_clock(), max_nodes_out="100%", breaker_share=0.5)
    n.xid79()  # 3 of 4 within the window is more than half: a fleet-wide cause
    st = n.sched.state()
    assert st.breaker_tripped and "3 of 4" in st.breaker_why
    assert [w for w, *_ in st.deferred] == ["breaker"]
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    for node in ("rasdx1", "rasdx2"):
        slurm.run("scontrol", "update", f"nodename={node}", "state=resume")
    n.tick(400)  # the others are back, the window passed: still tripped until a person resets
    assert n.sched.state().breaker_tripped
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    assert n.sched.reset_breaker("test")["was_tripped"]
    n.tick(1)
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    assert not n.sched.state().breaker_tripped
    n.close()


def test_tripped_breaker_survives_a_restart(slurm: SlurmCluster, tmp_path: Path) -> None:
    drain(slurm, "rasdx1", "rasd: xid 79 gpu 0 -> reboot_node")
    drain(slurm, "rasdx2", "rasd: xid 79 gpu 5 -> reboot_node")
    db, clock = tmp_path / "rasd.db", now_clock()
    n = Node(slurm, db, clock, max_nodes_out="100%")
    n.xid79()
    n.close()
    again = Node(slurm, db, clock, max_nodes_out="100%")
    st = again.sched.state()
    assert st.breaker_tripped and [w for w, *_ in st.deferred] == ["breaker"]
    again.close()


def test_old_outages_do_not_trip_the_breaker(slurm: SlurmCluster, tmp_path: Path) -> None:
    drain(slurm, "rasdx1", "rasd: xid 79 gpu 0 -> reboot_node")
    drain(slurm, "rasdx2", "rasd: xid 79 gpu 5 -> reboot_node")
    n = Node(slurm, tmp_path / "rasd.db", now_clock(), max_nodes_out="100%",
             breaker_window_seconds=60)
    n.clock.advance(120)  # the others went out two minutes ago, outside the window
    n.xid79()
    assert not n.sched.state().breaker_tripped
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    n.close()


def test_a_reload_that_raises_the_budget_lets_the_deferred_decision_act(
        slurm: SlurmCluster, tmp_path: Path) -> None:
    from dataclasses import replace

    drain(slurm, "rasdx1", "rasd: xid 48 gpu 0 -> reset_gpu")
    n = Node(slurm, tmp_path / "rasd.db", now_clock(), max_nodes_out="1")
    n.xid79()
    assert [w for w, *_ in n.sched.state().deferred] == ["budget"]
    n.sched.reconfigure(replace(n.settings, max_nodes_out="2", kind="none"))  # kind: restart
    assert n.sched.s.kind == "slurm"
    n.tick(11)
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    n.close()


def test_the_partition_is_the_scope(slurm: SlurmCluster, tmp_path: Path) -> None:
    drain(slurm, "cpux1", "rasd: xid 79 gpu 0 -> reboot_node")  # another partition's node
    whole = Node(slurm, tmp_path / "a.db", now_clock(), max_nodes_out="1", partition="")
    whole.xid79()
    assert [w for w, *_ in whole.sched.state().deferred] == ["budget"]
    assert whole.sched.state().scope_nodes == 5
    whole.close()
    gpu = Node(slurm, tmp_path / "b.db", now_clock(), max_nodes_out="1")
    gpu.xid79()
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    assert gpu.sched.state().scope_nodes == 4
    gpu.close()


def test_a_decision_deferred_at_a_restart_acts_once_there_is_room(slurm: SlurmCluster,
                                                                   tmp_path: Path) -> None:
    """Two owners hand the deferred reboot over after the restart (the ladder plans its open
    decision again, the scheduler retries its deferral): it runs once."""
    drain(slurm, "rasdx1", "rasd: xid 48 gpu 0 -> reset_gpu")
    db, clock = tmp_path / "rasd.db", now_clock()
    n = Node(slurm, db, clock, max_nodes_out="1")
    n.xid79()
    assert [w for w, *_ in n.sched.state().deferred] == ["budget"]
    n.close()
    slurm.run("scontrol", "update", "nodename=rasdx1", "state=resume")
    again = Node(slurm, db, clock, max_nodes_out="1")
    for _ in range(3):
        again.tick(11)
    assert sinfo(slurm, slurm.node) == ("drained", REASON)
    assert not again.sched.state().deferred
    assert not open_decisions(again.ladder.state(again.clock()))  # the reboot ran
    runs = [(a.kind, a.result) for a in again.store.actions()]
    assert runs == [("reboot_node", "ok")], runs
    again.close()
