"""The wire contract (v1) of simwatch: one pydantic model per message, shared by both services.

Parsing is strict (no type coercion) and forgiving of unknown fields. Every model is
published as a JSON Schema under ``schemas/`` (``python -m simwatch_contracts.schemas``).
"""

from .alerts import POOL_ALERTS, AlertType, CardAlert, LiftHint
from .card_events import (
    CARD_EVENT_ADAPTER,
    CardEvent,
    CardRecharged,
    CardRenewed,
    CardUpserted,
    NetworkObserved,
    Plan,
    ResumeRequested,
    SuspendRequested,
    ViolationCleared,
    ViolationReported,
    parse_card_event,
)
from .commands import CardCommand, CommandResult, CommandType, ResultStatus, parse_command_result
from .common import MAX_RECORD_BYTES, Billing, NetworkState, Reason
from .customer_settings import CustomerSettings, QuietHours, Sms, Webhook
from .dead_letter import DeadLetter
from .decisions import CardDecision, DecisionFacts, DecisionKind
from .errors import describe_validation_error
from .pools import MAX_POOL_QUOTA_BYTES, PoolEvent, PoolMember, PoolUpserted, parse_pool_event
from .usage import UsageRecord

__all__ = [
    "CARD_EVENT_ADAPTER",
    "MAX_POOL_QUOTA_BYTES",
    "MAX_RECORD_BYTES",
    "POOL_ALERTS",
    "AlertType",
    "Billing",
    "CardAlert",
    "CardCommand",
    "CardDecision",
    "CardEvent",
    "CardRecharged",
    "CardRenewed",
    "CardUpserted",
    "CommandResult",
    "CommandType",
    "CustomerSettings",
    "DeadLetter",
    "DecisionFacts",
    "DecisionKind",
    "LiftHint",
    "NetworkObserved",
    "NetworkState",
    "Plan",
    "PoolEvent",
    "PoolMember",
    "PoolUpserted",
    "QuietHours",
    "Reason",
    "ResultStatus",
    "ResumeRequested",
    "Sms",
    "SuspendRequested",
    "UsageRecord",
    "ViolationCleared",
    "ViolationReported",
    "Webhook",
    "describe_validation_error",
    "parse_card_event",
    "parse_command_result",
    "parse_pool_event",
]
