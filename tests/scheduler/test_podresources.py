"""Pod names from the kubelet's pod-resources API: a real gRPC server on a Unix socket answers
with the kubelet's full v1 messages (CPU ids, memory, topology and dynamic resources included),
which rasd decodes knowing only the fields it reads."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
from typing import Any, Iterator

import pytest

grpc = pytest.importorskip("grpc", reason="grpcio is not installed (tests/run.sh installs "
                           "rasd[test], which brings it)")

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402

from rasd.scheduler.attribution import JobWatch  # noqa: E402
from rasd.scheduler.ledger import Ledger  # noqa: E402
from rasd.scheduler.podresources import SERVICE_METHOD, pod_names_by_gpu  # noqa: E402
from rasd.scheduler.state import JobRef  # noqa: E402
from tests.scheduler.test_jobs import POD, proc  # noqa: E402

UUID3 = "GPU-3a1b2c3d-0000-4000-8000-000000000003"


def _kubelet_messages() -> dict[str, Any]:
    """The kubelet's pod-resources v1 List messages with every field of the published API."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="kubelet_podresources_v1_test.proto",
                                             package="v1", syntax="proto3")
    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    spec = {
        "ListPodResourcesRequest": [],
        "ListPodResourcesResponse": [("pod_resources", 1, F.TYPE_MESSAGE, rep, "PodResources")],
        "PodResources": [("name", 1, F.TYPE_STRING, opt, ""), ("namespace", 2, F.TYPE_STRING, opt, ""),
                         ("containers", 3, F.TYPE_MESSAGE, rep, "ContainerResources")],
        "ContainerResources": [("name", 1, F.TYPE_STRING, opt, ""),
                               ("devices", 2, F.TYPE_MESSAGE, rep, "ContainerDevices"),
                               ("cpu_ids", 3, F.TYPE_INT64, rep, ""),
                               ("memory", 4, F.TYPE_MESSAGE, rep, "ContainerMemory"),
                               ("dynamic_resources", 5, F.TYPE_MESSAGE, rep, "DynamicResource")],
        "ContainerDevices": [("resource_name", 1, F.TYPE_STRING, opt, ""),
                             ("device_ids", 2, F.TYPE_STRING, rep, ""),
                             ("topology", 3, F.TYPE_MESSAGE, opt, "TopologyInfo")],
        "ContainerMemory": [("memory_type", 1, F.TYPE_STRING, opt, ""),
                            ("size", 2, F.TYPE_UINT64, opt, ""),
                            ("topology", 3, F.TYPE_MESSAGE, opt, "TopologyInfo")],
        "TopologyInfo": [("nodes", 1, F.TYPE_MESSAGE, rep, "NUMANode")],
        "NUMANode": [("ID", 1, F.TYPE_INT64, opt, "")],
        "DynamicResource": [("class_name", 1, F.TYPE_STRING, opt, ""),
                            ("claim_name", 2, F.TYPE_STRING, opt, ""),
                            ("claim_namespace", 3, F.TYPE_STRING, opt, "")],
    }
    for name, fields in spec.items():
        m = fdp.message_type.add(name=name)
        for fname, num, ftype, label, tname in fields:
            fd = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                fd.type_name = f".v1.{tname}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"v1.{n}"))
            for n in spec}


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[str]:
    M = _kubelet_messages()
    resp = M["ListPodResourcesResponse"]()
    pod = resp.pod_resources.add(name="llm-train-0", namespace="research")
    c = pod.containers.add(name="trainer", cpu_ids=[4, 5, 6])
    d = c.devices.add(resource_name="nvidia.com/gpu", device_ids=[UUID3, "GPU-other"])
    d.topology.nodes.add(ID=1)
    c.memory.add(memory_type="memory", size=1 << 30)
    c.dynamic_resources.add(class_name="gpu.example.com", claim_name="c", claim_namespace="r")
    other = resp.pod_resources.add(name="nic-agent", namespace="kube-system")
    other.containers.add(name="a").devices.add(resource_name="example.com/nic", device_ids=["0"])
    idx = resp.pod_resources.add(name="by-index", namespace="batch")
    idx.containers.add(name="b").devices.add(resource_name="nvidia.com/gpu", device_ids=["5"])

    def list_(request: Any, context: Any) -> Any:
        return resp

    handler = grpc.method_handlers_generic_handler("v1.PodResourcesLister", {
        "List": grpc.unary_unary_rpc_method_handler(
            list_, request_deserializer=M["ListPodResourcesRequest"].FromString,
            response_serializer=lambda m: m.SerializeToString())})
    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((handler,))
    sock = str(tmp_path / "kubelet.sock")
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    assert SERVICE_METHOD == "/v1.PodResourcesLister/List"
    yield sock
    server.stop(0)


def test_gpu_devices_to_pod_names(kubelet: str) -> None:
    assert pod_names_by_gpu(kubelet) == {UUID3: "research/llm-train-0",
                                        "GPU-other": "research/llm-train-0",
                                        "5": "batch/by-index"}


def test_a_pods_process_on_a_gpu_is_named(kubelet: str, tmp_path: Path) -> None:
    root = tmp_path / "proc"
    proc(root, 77, f"0::/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/x.scope\n")
    ledger = Ledger(str(tmp_path / "rasd.db"))
    w = JobWatch([3, 5], lambda gpu: [77], ledger, proc_root=str(root),
                 pod_names=lambda: pod_names_by_gpu(kubelet),
                 gpu_uuid=lambda gpu: UUID3 if gpu == 3 else "GPU-not-listed")
    w.refresh()
    assert w.current() == {3: (JobRef("kubernetes", POD, "research/llm-train-0", 77),),
                           5: (JobRef("kubernetes", POD, "batch/by-index", 77),)}
    w.close()
    ledger.close()
