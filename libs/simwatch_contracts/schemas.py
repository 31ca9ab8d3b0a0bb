"""Generate the checked-in JSON Schemas from the models: `python -m simwatch_contracts.schemas`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .alerts import CardAlert
from .card_events import CARD_EVENT_ADAPTER
from .commands import CardCommand, CommandResult
from .customer_settings import CustomerSettings
from .dead_letter import DeadLetter
from .decisions import CardDecision
from .pools import PoolUpserted
from .usage import UsageRecord

SCHEMA_DIR = Path(__file__).parent / "schemas"

_MODELS: dict[str, type[BaseModel]] = {
    "usage.records": UsageRecord,
    "card.commands": CardCommand,
    "card.command_results": CommandResult,
    "card.alerts": CardAlert,
    "card.decisions": CardDecision,
    "customer.settings": CustomerSettings,
    "pool.events": PoolUpserted,
    "usage.records.dlq": DeadLetter,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every topic's schema (validation mode: what a consumer accepts)."""
    schemas: dict[str, dict[str, Any]] = {
        name: model.model_json_schema(mode="validation") for name, model in _MODELS.items()
    }
    schemas["card.events"] = CARD_EVENT_ADAPTER.json_schema(mode="validation")
    out = {}
    for topic, schema in sorted(schemas.items()):
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        schema.setdefault("title", topic)
        schema["$id"] = f"https://simwatch.example/schemas/v1/{topic}.json"
        out[f"{topic}.json"] = (
            json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
    return out


def main() -> int:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, text in render().items():
        (SCHEMA_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA_DIR.name}/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
