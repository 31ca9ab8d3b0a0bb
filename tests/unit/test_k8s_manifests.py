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


def _env(name: str) -> dict[str, dict[str, Any]]:
    (container,) = of_kind("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}


def test_the_card_api_token_comes_from_the_secret() -> None:
    config = of_kind("ConfigMap")["simwatch"]["data"]
    assert config["USAGE_MONITOR_WEB_BIND"] == "0.0.0.0"  # not loopback: a token is required
    assert "USAGE_MONITOR_API_TOKEN" not in config
    ref = _env("usage-monitor")["USAGE_MONITOR_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    secret = of_kind("Secret")[ref["name"]]
    assert ref["key"] in secret["stringData"]
    assert set(secret["stringData"]) <= env_names(UsageMonitorSettings) | env_names(
        NotifierSettings
    )
    # Shipped empty: a deployment that forgets to fill it in refuses to start (exit 2).
    assert secret["stringData"][ref["key"]] == ""


def _policy_for(name: str) -> dict[str, Any]:
    (policy,) = [
        p["spec"]
        for p in of_kind("NetworkPolicy").values()
        if p["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": name}
    ]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    return policy


def _ports(rules: list[dict[str, Any]]) -> set[int]:
    return {p["port"] for r in rules for p in r.get("ports", [])}


@pytest.mark.parametrize("name", sorted(PORTS))
def test_network_policy_lets_in_only_prometheus_and_api_clients(name: str) -> None:
    policy = _policy_for(name)
    assert _ports(policy["ingress"]) == {PORTS[name]}
    sources = [peer for rule in policy["ingress"] for peer in rule["from"]]
    assert all("ipBlock" not in peer for peer in sources)
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    assert any(p.get("namespaceSelector", {}).get("matchLabels") == monitoring for p in sources)
    api_clients = [
        p
        for p in sources
        if p.get("podSelector", {}).get("matchLabels", {}).get("simwatch.io/api-client")
    ]
    assert bool(api_clients) == (name == "usage-monitor")


@pytest.mark.parametrize("name", sorted(PORTS))
def test_network_policy_egress_to_kafka_redis_dns_and_webhooks_only(name: str) -> None:
    egress = _policy_for(name)["egress"]
    wanted = {53, 9092, 6379} | ({443} if name == "notifier" else set())
    assert _ports(egress) == wanted
    for rule in egress:
        assert rule.get("ports"), "every egress rule names its ports"
    internet = [
        peer
        for rule in egress
        for peer in rule.get("to", [])
        if peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"
    ]
    if name == "notifier":  # webhooks go anywhere public on 443, never to the metadata service
        (peer,) = internet
        assert "169.254.0.0/16" in peer["ipBlock"]["except"]
    else:
        assert not internet
