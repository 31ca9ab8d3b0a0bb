"""deploy/k8s: structurally sound, probes on the health endpoints, room to drain, and every
configured variable a real setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.settings import Settings as NotifierSettings
from usage_monitor.settings import Settings as UsageMonitorSettings

from .test_deploy_files import env_names

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
PORTS = {"usage-monitor": 6066, "notifier": 6067}


def docs() -> list[dict[str, Any]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs() if d["kind"] == kind}


def test_every_object_has_the_basics() -> None:
    for d in docs():
        assert {"apiVersion", "kind", "metadata"} <= d.keys()
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "simwatch"


@pytest.mark.parametrize("name", sorted(PORTS))
def test_deployment_probes_resources_and_drain(name: str) -> None:
    deploy = of_kind("Deployment")[name]
    spec = deploy["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 45
    (container,) = pod["containers"]
    assert container["ports"][0]["containerPort"] == PORTS[name]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(PORTS[name])
    service = of_kind("Service")[name]
    assert service["spec"]["ports"][0]["port"] == PORTS[name]
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_configmap_names_only_real_settings() -> None:
    data = of_kind("ConfigMap")["simwatch"]["data"]
    known = env_names(UsageMonitorSettings) | env_names(NotifierSettings)
    assert not set(data) - known, sorted(set(data) - known)
    assert data["USAGE_MONITOR_TOPIC_PARTITIONS"] == data["USAGE_MONITOR_REDIS_SHARDS"]
