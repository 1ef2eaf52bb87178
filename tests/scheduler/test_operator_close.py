"""After a person closes the decisions that kept the node out (``rasd ladder close``), the node
comes back by the usual path: once nothing open needs it out and the hold has passed, and only
while the drain is rasd's (real Slurm)."""

from __future__ import annotations

from pathlib import Path

from rasd.model import Rung
from rasd.scheduler.service import open_decisions
from tests.scheduler.slurmcluster import SlurmCluster
from tests.scheduler.test_slurm import Node, now_clock, sinfo

REASON = "board replaced (serial 1654922006551)"
H = 3600.0


def _rma(n: Node, slurm: SlurmCluster, gpu: int = 3) -> None:
    """Xid 79 five times, 4 h apart (its reboot fails each time): an RMA, the node drained."""
    for k in range(5):
        if k:
            n.tick(4 * H)
        n.xid(79, gpu)
    assert {d.rung for d in n.ladder.decisions_for(gpu)} == {Rung.RMA}
    assert sinfo(slurm, slurm.node)[0] == "drained"


def test_closing_the_rma_brings_the_node_back_after_the_hold(slurm: SlurmCluster,
                                                             tmp_path: Path) -> None:
    n = Node(slurm, tmp_path / "rasd.db", now_clock(), reboot="false")
    _rma(n, slurm)
    for _ in range(3):
        n.tick(100)
    assert sinfo(slurm, slurm.node)[0] == "drained"  # an RMA never expires
    n.ladder.close_by_operator(3, None, REASON, "tech", now_wall=n.clock())
    assert not open_decisions(n.ladder.state(n.clock()))
    n.tick()
    n.tick(30)
    assert sinfo(slurm, slurm.node)[0] == "drained"  # within the hold
    n.tick(31)
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    assert n.sched.state().counts.get("resumes") == 1
    n.close()


def test_a_reboot_run_by_hand_and_closed_brings_the_node_back(slurm: SlurmCluster,
                                                               tmp_path: Path) -> None:
    n = Node(slurm, tmp_path / "rasd.db", now_clock(), reboot="false")
    n.xid79()  # the reboot command fails: its decision stays open for the operator
    assert {d.rung for d in n.ladder.decisions_for(3)} == {Rung.REBOOT_NODE}
    n.tick(100)
    assert sinfo(slurm, slurm.node)[0] == "drained"
    n.ladder.close_by_operator(3, None, "rebooted by hand", "tech", now_wall=n.clock())
    n.tick()
    n.tick(61)
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    n.close()


def test_the_node_stays_out_while_another_open_decision_needs_it(slurm: SlurmCluster,
                                                                 tmp_path: Path) -> None:
    n = Node(slurm, tmp_path / "rasd.db", now_clock(), reboot="false")
    _rma(n, slurm, 3)
    n.xid(79, 5)  # another GPU whose reboot failed: its decision stays open
    n.ladder.close_by_operator(3, None, REASON, "tech", now_wall=n.clock())
    assert {d.gpu for d in open_decisions(n.ladder.state(n.clock()))} == {5}
    for _ in range(4):
        n.tick(100)
    assert sinfo(slurm, slurm.node)[0] == "drained"
    n.ladder.close_by_operator(5, None, "rebooted by hand", "tech", now_wall=n.clock())
    n.tick()
    n.tick(61)
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    n.close()


def test_a_close_never_resumes_a_persons_drain(slurm: SlurmCluster, tmp_path: Path) -> None:
    slurm.run("scontrol", "update", f"nodename={slurm.node}", "state=drain",
              "reason=board swap, ticket 4711")
    n = Node(slurm, tmp_path / "rasd.db", now_clock(), reboot="false")
    _rma(n, slurm)
    n.ladder.close_by_operator(3, None, REASON, "tech", now_wall=n.clock())
    for _ in range(3):
        n.tick(400)
    assert sinfo(slurm, slurm.node) == ("drained", "board swap, ticket 4711")
    assert n.sched.state().counts.get("resumes", 0) == 0
    n.close()


def test_a_replaced_board_found_at_the_start_brings_the_node_back(slurm: SlurmCluster,
                                                                  tmp_path: Path) -> None:
    """The RMA'd board swapped while rasd was down: the start that finds another UUID in the
    slot closes the RMA by itself, and the node comes back by the same path."""
    clock = now_clock()
    n = Node(slurm, tmp_path / "rasd.db", clock, reboot="false",
             gpu_info=lambda g: {"uuid": f"GPU-old-{g}"})
    _rma(n, slurm)
    n.close()
    n = Node(slurm, tmp_path / "rasd.db", clock, reboot="false",
             gpu_info=lambda g: {"uuid": f"GPU-new-{g}" if g == 3 else f"GPU-old-{g}"})
    n.tick()
    assert not open_decisions(n.ladder.state(n.clock()))
    (close,) = n.store.operator_closes(3)
    assert close.event.details["reason"] == "board replaced: uuid GPU-old-3 -> GPU-new-3"
    n.tick(30)
    assert sinfo(slurm, slurm.node)[0] == "drained"  # within the hold
    n.tick(31)
    assert sinfo(slurm, slurm.node) == ("idle", "none")
    n.close()


def test_the_same_board_at_the_start_keeps_the_node_out(slurm: SlurmCluster,
                                                        tmp_path: Path) -> None:
    clock = now_clock()
    n = Node(slurm, tmp_path / "rasd.db", clock, reboot="false",
             gpu_info=lambda g: {"uuid": f"GPU-old-{g}"})
    _rma(n, slurm)
    n.close()
    n = Node(slurm, tmp_path / "rasd.db", clock, reboot="false",
             gpu_info=lambda g: {"uuid": f"GPU-old-{g}"})
    for _ in range(3):
        n.tick(100)
    assert {d.rung for d in n.ladder.decisions_for(3)} == {Rung.RMA}
    assert sinfo(slurm, slurm.node)[0] == "drained"
    n.close()
