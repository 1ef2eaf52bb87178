"""The ladder's exporter section over a service's state."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from exporters.sections.ladder import collect
from rasd.ladder.service import LadderService
from rasd.ladder.settings import ActionSettings, LadderSettings
from rasd.model import FaultEvent, FaultKind, NodeIdentity
from rasd.snapshot import Snapshot
from rasd.store import Store


def test_exporter_section():
    svc = LadderService(LadderSettings(), ActionSettings(), Store(":memory:"), "n", now_wall=0)
    svc.ingest([FaultEvent(1.0, 0, FaultKind.XID, None, {"xid": 79}),
                FaultEvent(2.0, 1, FaultKind.NVLINK, 3, {"link": 3, "state": "down"}),
                FaultEvent(3.0, 2, FaultKind.REMAP, None, {"failure": True}),
                FaultEvent(4.0, 3, FaultKind.SDC, None, {"verdict": "suspect"})], 4.0)
    snap = Snapshot(5.0, NodeIdentity("n", "fake", None, None, None), (), ladder=svc.state(5.0))

    class C:
        def collect(self):
            return collect(snap)

    reg = CollectorRegistry()
    reg.register(C())
    g = reg.get_sample_value
    assert g("rasd_gpu_repair_rung", {"gpu": "0", "scope": "node"}) == 4
    assert g("rasd_node_repair_rung") == 5
    assert g("rasd_gpu_nvlink_repair_rung", {"gpu": "1", "link": "3", "scope": "link"}) == 3
    assert g("rasd_gpu_repair_rung", {"gpu": "1", "scope": "gpu"}) == 0  # the link only
    assert g("rasd_ladder_rma_queue_length") == 1
    assert g("rasd_gpu_excluded", {"gpu": "2"}) == 1
    assert g("rasd_gpu_sdc_suspect", {"gpu": "3"}) == 1
    assert g("rasd_gpu_technician_flag", {"gpu": "2", "fault": "remap_failure"}) == 1
    assert g("rasd_ladder_faults_total", {"gpu": "0", "kind": "xid", "rung": "reboot_node"}) == 1
    empty = Snapshot(5.0, NodeIdentity("n", "fake", None, None, None), ())
    assert list(collect(empty)) == []
