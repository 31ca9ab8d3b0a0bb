"""docker-compose.yml cannot run here (no Docker engine): check what can be checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from notifier.settings import Settings as NotifierSettings
from usage_monitor.settings import Settings as UsageMonitorSettings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def env_names(settings: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings class reads."""
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for name, info in settings.model_fields.items():
        alias = info.validation_alias
        choices = getattr(alias, "choices", None)
        names |= {str(c) for c in choices} if choices else {f"{prefix}{name}".upper()}
    return names


def test_compose_parses_and_has_the_whole_system() -> None:
    services = compose()["services"]
    assert {"kafka", "redis", "usage-monitor", "notifier", "prometheus", "grafana"} <= set(services)
    assert services["usage-monitor"]["build"] == services["notifier"]["build"] == "."
    assert "--appendonly" in services["redis"]["command"]
    assert services["kafka"]["image"].startswith("apache/kafka:4")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_every_environment_key_is_a_real_setting() -> None:
    services = compose()["services"]
    known = env_names(UsageMonitorSettings)
    unknown = set(services["usage-monitor"]["environment"]) - known
    assert not unknown, f"usage-monitor does not read {sorted(unknown)}"
    assert "USAGE_MONITOR_WEB_PORT" in known
    notifier = env_names(NotifierSettings)
    unknown = set(services["notifier"]["environment"]) - notifier
    assert not unknown, f"notifier does not read {sorted(unknown)}"
    assert {"SMS_PROVIDER", "SMS_HTTP_URL", "NOTIFIER_WEB_PORT"} <= notifier
    assert "KAFKA_BOOTSTRAP_SERVERS" in known and "REDIS_URL" in known


def test_every_mounted_file_exists() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
    assert (ROOT / "Dockerfile").exists()


def test_a_public_web_bind_comes_with_an_api_token() -> None:
    env = compose()["services"]["usage-monitor"]["environment"]
    assert env["USAGE_MONITOR_WEB_BIND"] == "0.0.0.0"
    assert "USAGE_MONITOR_API_TOKEN" in env
    assert ":?" in env["USAGE_MONITOR_API_TOKEN"], "compose refuses to start without it"
