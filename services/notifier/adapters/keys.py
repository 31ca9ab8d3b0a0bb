"""Every Redis key the notifier writes, built in one place.

All keys share one hash tag, ``{<prefix>}``, so every script call touches a single Redis
Cluster slot (the notifier's load is alerts, not usage records: one slot is plenty).

    {<prefix>}:d:<delivery_id>   hash   the delivery: alert, target, state, attempts, claims
    {<prefix>}:due               zset   when each pending delivery is next attempted
    {<prefix>}:c:<customer_id>   string the customer's settings (JSON, as received)
    {<prefix>}:gone:<customer>   string a webhook URL that answered 410 (disabled)
    {<prefix>}:rl:<digest>:<h>   string SMS sent to a number in an hour (rate limit); the
                                        digest keeps phone numbers out of key names
    <prefix>:dur:{<tag>}         string written by each durability barrier, one per Redis
                                        primary (the tag puts it in a slot of that primary)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "nt"

    @property
    def tag(self) -> str:
        return f"{{{self.prefix}}}"

    def delivery(self, delivery_id: str) -> str:
        return f"{self.delivery_prefix}{delivery_id}"

    @property
    def delivery_prefix(self) -> str:
        """What a delivery's key is before its id (the scripts name the hashes from it)."""
        return f"{self.tag}:d:"

    @property
    def due(self) -> str:
        return f"{self.tag}:due"

    def customer(self, customer_id: str) -> str:
        return f"{self.tag}:c:{customer_id}"

    def durability(self, tag: str) -> str:
        """The key a durability barrier writes on the primary that serves hash tag `tag`
        (the ledger's own tag is on one primary, but a barrier covers every primary)."""
        return f"{self.prefix}:dur:{{{tag}}}"

    def webhook_gone(self, customer_id: str) -> str:
        return f"{self.tag}:gone:{customer_id}"

    def sms_count(self, number: str, hour: int) -> str:
        digest = hashlib.sha256(number.encode()).hexdigest()[:16]
        return f"{self.tag}:rl:{digest}:{hour}"
