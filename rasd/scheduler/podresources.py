"""Which pod holds each GPU, from the kubelet's pod-resources API (gRPC on a Unix socket,
``/var/lib/kubelet/pod-resources/kubelet.sock``, service ``v1.PodResourcesLister``).

Only the fields rasd reads are described (pod name and namespace, each container's devices by
resource name and device ids); protobuf skips the rest (CPU ids, memory, topology, dynamic
resources), so newer kubelets decode the same. The NVIDIA device plugin names GPUs by UUID (its
default) or by index; both are returned as given.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

SERVICE_METHOD = "/v1.PodResourcesLister/List"
GPU_RESOURCE_PREFIX = "nvidia.com/"  # nvidia.com/gpu, and MIG resources nvidia.com/mig-*


@lru_cache(maxsize=1)
def _classes() -> tuple[Any, Any]:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="rasd/podresources_v1_subset.proto",
                                             package="v1", syntax="proto3")
    fdp.message_type.add(name="ListPodResourcesRequest")

    def message(name: str, *fields: tuple[str, int, int, str]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype,
                             label=f.LABEL_REPEATED if fname in _REPEATED else f.LABEL_OPTIONAL)
            if type_name:
                fd.type_name = type_name

    message("ListPodResourcesResponse", ("pod_resources", 1, f.TYPE_MESSAGE, ".v1.PodResources"))
    message("PodResources", ("name", 1, f.TYPE_STRING, ""), ("namespace", 2, f.TYPE_STRING, ""),
            ("containers", 3, f.TYPE_MESSAGE, ".v1.ContainerResources"))
    message("ContainerResources", ("name", 1, f.TYPE_STRING, ""),
            ("devices", 2, f.TYPE_MESSAGE, ".v1.ContainerDevices"))
    message("ContainerDevices", ("resource_name", 1, f.TYPE_STRING, ""),
            ("device_ids", 2, f.TYPE_STRING, ""))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get = message_factory.GetMessageClass
    return (get(pool.FindMessageTypeByName("v1.ListPodResourcesRequest")),
            get(pool.FindMessageTypeByName("v1.ListPodResourcesResponse")))


_REPEATED = {"pod_resources", "containers", "devices", "device_ids"}


def pod_names_by_gpu(socket_path: str, timeout: float = 5.0) -> dict[str, str]:
    """GPU device id (UUID or index) -> ``namespace/name`` of the pod the kubelet gave it."""
    import grpc

    request, response = _classes()
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        call = channel.unary_unary(SERVICE_METHOD,
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=response.FromString)
        reply = call(request(), timeout=timeout)
    out: dict[str, str] = {}
    for pod in reply.pod_resources:
        for c in pod.containers:
            for d in c.devices:
                if d.resource_name.startswith(GPU_RESOURCE_PREFIX):
                    for dev in d.device_ids:
                        out[dev] = f"{pod.namespace}/{pod.name}"
    return out
