"""deploy/kubernetes: the DaemonSet, its Service and ConfigMap, and the ServiceMonitor, parsed with
PyYAML and checked against each other, rasd's configuration loader and the Prometheus rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rasd import config as config_mod

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"


def docs(name: str) -> dict[str, dict]:
    out = {}
    for d in yaml.safe_load_all((K8S / name).read_text()):
        assert d["kind"] not in out, f"two {d['kind']} objects in {name}"
        out[d["kind"]] = d
    return out


@pytest.fixture(scope="module")
def objs() -> dict[str, dict]:
    return docs("daemonset.yaml")


@pytest.fixture(scope="module")
def pod(objs: dict[str, dict]) -> dict:
    return objs["DaemonSet"]["spec"]["template"]


@pytest.fixture(scope="module")
def container(pod: dict) -> dict:
    (c,) = pod["spec"]["containers"]
    return c


def test_objects_and_namespace(objs: dict[str, dict]) -> None:
    assert set(objs) == {"Namespace", "ServiceAccount", "ConfigMap", "DaemonSet", "Service",
                         "ClusterRole", "ClusterRoleBinding"}
    ns = objs["Namespace"]["metadata"]["name"]
    for kind, o in objs.items():
        assert o["metadata"].get("namespace", ns) == ns, kind
        assert o["metadata"]["labels"]["app.kubernetes.io/name"] == "rasd", kind
    assert objs["DaemonSet"]["apiVersion"] == "apps/v1"


def test_runs_only_on_gpu_nodes_and_tolerates_their_taint(objs: dict[str, dict], pod: dict) -> None:
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    sel = objs["DaemonSet"]["spec"]["selector"]["matchLabels"]
    assert sel.items() <= pod["metadata"]["labels"].items()


def test_nvml_privileges_without_taking_a_gpu(pod: dict, container: dict) -> None:
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "utility" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    sc = container["securityContext"]
    assert sc["privileged"] is True or "SYS_ADMIN" in sc.get("capabilities", {}).get("add", [])
    # A GPU request would take a GPU away from the jobs rasd watches.
    for section in ("requests", "limits"):
        assert not any(k.startswith("nvidia.com/") for k in container["resources"].get(section, {}))
    assert container["resources"]["limits"]["memory"]
    # rasd exits within 5 s of SIGTERM; Kubernetes must wait at least that long.
    assert pod["spec"]["terminationGracePeriodSeconds"] > 5


def _mounts(pod: dict, container: dict) -> dict[str, dict]:
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    return {m["mountPath"]: vols[m["name"]] for m in container["volumeMounts"]}


def test_state_and_control_socket_live_on_the_host(objs: dict[str, dict], pod: dict, container: dict) -> None:
    mounts = _mounts(pod, container)
    cfg = config_mod.parse(objs["ConfigMap"]["data"]["rasd.toml"], source="ConfigMap rasd-config")
    state_dir = str(Path(cfg.daemon.state_path).parent)
    socket_dir = str(Path(cfg.daemon.control_socket).parent)
    assert mounts[state_dir]["hostPath"] == {"path": "/var/lib/rasd", "type": "DirectoryOrCreate"}
    assert mounts[socket_dir]["hostPath"]["path"] == "/run/rasd"
    assert mounts["/dev/kmsg"]["hostPath"] == {"path": cfg.telemetry.kernel_log, "type": "CharDevice"}
    # With a read-only root, every path rasd writes is a volume.
    if container["securityContext"].get("readOnlyRootFilesystem"):
        assert "/tmp" in mounts


def test_config_map_is_a_valid_rasd_config_used_by_the_command(objs: dict[str, dict], pod: dict, container: dict) -> None:
    cfg = config_mod.parse(objs["ConfigMap"]["data"]["rasd.toml"], source="ConfigMap rasd-config")
    assert cfg.daemon.listen == f"0.0.0.0:{config_mod.DEFAULT_PORT}"
    assert cfg.actions.enforce is False and cfg.power.apply is False  # advisory unless chosen
    cmd = container["command"]
    assert cmd[:4] == ["rasd", "run", "--backend", "nvml"]
    conf = cmd[cmd.index("--config") + 1]
    mounts = _mounts(pod, container)
    assert mounts[str(Path(conf).parent)]["configMap"]["name"] == objs["ConfigMap"]["metadata"]["name"]
    assert Path(conf).name in objs["ConfigMap"]["data"]


def test_scrape_annotations_port_and_probes(objs: dict[str, dict], pod: dict, container: dict) -> None:
    port = config_mod.DEFAULT_PORT
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/port"] == str(port)
    assert ann["prometheus.io/path"] == "/metrics"
    (p,) = container["ports"]
    assert (p["name"], p["containerPort"]) == ("metrics", port)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, probe
    svc = objs["Service"]["spec"]
    assert svc["clusterIP"] == "None"
    assert svc["selector"].items() <= pod["metadata"]["labels"].items()
    assert svc["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}]


def test_service_monitor_finds_the_service(objs: dict[str, dict]) -> None:
    sm = docs("servicemonitor.yaml")["ServiceMonitor"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    svc = objs["Service"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert svc["metadata"]["namespace"] in sm["spec"]["namespaceSelector"]["matchNames"]
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert ep["path"] == "/metrics"
    # The operator names the job after the Service: RasdDown looks for up{job="rasd"}.
    assert svc["metadata"]["name"] == "rasd" and "jobLabel" not in sm["spec"]
    alerts = (ROOT / "deploy" / "prometheus" / "rasd-alerts.yml").read_text()
    assert 'up{job="rasd"}' in alerts


def test_annotation_scrape_example_keeps_these_pods(objs: dict[str, dict], pod: dict) -> None:
    cfg = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus-kubernetes.yml").read_text())
    (job,) = cfg["scrape_configs"]
    keep = {tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    assert keep[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)] == pod["metadata"]["labels"]["app.kubernetes.io/name"]
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [objs["DaemonSet"]["metadata"]["namespace"]]


def test_dockerfile_runs_the_nvml_daemon_with_the_mounted_config(container: dict) -> None:
    text = (K8S / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["rasd"]' in text and "EXPOSE 9863" in text
    assert "/etc/rasd/rasd.toml" in text and "pip install" in text
    # the wheel is built with a compiler, so the image carries the native power reader
    assert "AS build" in text and "gcc" in text and "pip wheel" in text


def test_node_name_from_the_downward_api_and_credentials_for_the_scheduler(pod: dict, container: dict) -> None:
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is True and spec["serviceAccountName"] == "rasd"


def test_pod_resources_socket_is_mounted_where_the_config_looks(pod: dict, container: dict) -> None:
    from rasd.scheduler.settings import SchedulerSettings

    mounts = {m["name"]: m for m in container["volumeMounts"]}
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    m = mounts["pod-resources"]
    assert m["readOnly"] is True
    assert vols["pod-resources"]["hostPath"]["path"] == m["mountPath"]
    assert SchedulerSettings().pod_resources_socket.startswith(m["mountPath"] + "/")
