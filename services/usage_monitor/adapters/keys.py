"""Every Redis key usage_monitor writes, built in one place.

All keys of a card carry the hash tag of its *shard*, ``{<n>}``, where n is Kafka's own
partition of the ICCID (murmur2 of the key, modulo the shard count). With the shard count
equal to the `usage.records` partition count, one Kafka partition's batch lands in one
Redis Cluster slot, so a single script call applies the whole batch.

    <prefix>:{n}:c:<iccid>      hash   card: v (version), s (state), cal, u:<cycle>, w:<cycle>
    <prefix>:{n}:rd:<day>:<b>   set    remembered record ids of event-time day <day> (UTC,
                                yyyymmdd), bucket b: 64-bit digests, an intset (see
                                dedupe.py); expires whole after the de-duplication window
    <prefix>:{n}:e:<event_id>   string card event applied (TTL)
    <prefix>:{n}:h:<iccid>      list   the card's most recent decisions, newest first (capped)
    <prefix>:{n}:d              zset   when each card next needs the clock (epoch seconds)
    <prefix>:{n}:s              hash   shard statistics: `suspended` (cards suspended now)
    <prefix>:{n}:o              stream outbox of alerts and commands not yet on Kafka
    <prefix>:pt:<fingerprint>   string a profile template (customer, plan, calendar) shared by
                                many cards; immutable, so workers cache it for good
    <prefix>:{n}:ol             string outbox drain lock
    <prefix>:dur:{<tag>}        string written by each durability barrier, one per Redis
                                primary (the tag puts it in a slot of that primary)
    <prefix>:cu:{<customer>}    hash   the customer's blacklist: c:<iccid> "<version>:<owed>"
                                of each card cancelled for debt, p:<event_id> payments made
                                through a held card, h:<iccid> cards held for the debt

No other module writes a key format. The Lua scripts get every key they touch in KEYS, built
here, except where a batch script meets keys it can only know per record: ``ingest.lua``
gets the *prefixes* `card_prefix(shard)` and `dedupe_prefix(shard)` in ARGV and appends
the record's ICCID, or its day and bucket, to them, and ``commit.lua`` gets
`card_prefix(shard)` and `event_prefix(shard)` and appends each commit's ICCID or event id
(one call per shard and batch, no extra round trip). Their KEYS[1], the shard's outbox,
routes the call to the shard's Redis Cluster slot, which every key built from those
prefixes shares. (Hash *fields* inside a card, such
as ``u:<cycle>``, are listed above and named by the scripts and ``redis_store.py``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 18)
def _murmur(iccid: str) -> int:
    # aiokafka's murmur2 is pure Python (~3 us); a fleet's active cards repeat constantly.
    return int(murmur2(iccid.encode()) & 0x7FFFFFFF)


def shard_of(iccid: str, shards: int) -> int:
    """Kafka's default partition for this key, modulo `shards` (same formula as the Java client)."""
    return _murmur(iccid) % shards


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "sw"
    shards: int = 12

    def shard(self, iccid: str) -> int:
        return _murmur(iccid) % self.shards

    def tag(self, shard: int) -> str:
        """Prefix of every key in `shard`, e.g. ``sw:{7}:``."""
        return f"{self.prefix}:{{{shard}}}:"

    def card_prefix(self, shard: int) -> str:
        """``card(iccid)`` is this plus the ICCID (``ingest.lua`` builds card keys so)."""
        return f"{self.tag(shard)}c:"

    def card(self, iccid: str) -> str:
        return self.card_prefix(self.shard(iccid)) + iccid

    def dedupe_prefix(self, shard: int) -> str:
        """``dedupe_bucket`` is this plus ``<day>:<bucket>`` (``ingest.lua`` builds them so)."""
        return f"{self.tag(shard)}rd:"

    def dedupe_bucket(self, shard: int, day: str, bucket: int) -> str:
        return f"{self.dedupe_prefix(shard)}{day}:{bucket}"

    def history(self, iccid: str) -> str:
        return self.history_prefix(self.shard(iccid)) + iccid

    def history_prefix(self, shard: int) -> str:
        """``history`` is this plus the ICCID (``commit.lua`` builds them so)."""
        return f"{self.tag(shard)}h:"

    def pending_prefix(self, shard: int) -> str:
        """A card's unconfirmed command is this plus the ICCID: apart from the card's hash,
        whose values must stay small for Redis's compact encoding (``codec``)."""
        return f"{self.tag(shard)}p:"

    def pending(self, iccid: str) -> str:
        return self.pending_prefix(self.shard(iccid)) + iccid

    def pool_usage(self, shard: int, cycle: str) -> str:
        """Every pool's usage counted in this shard in a cycle (a hash: pool -> bytes): one
        read per shard serves every pool a batch touched."""
        return f"{self.tag(shard)}pc:{cycle}"

    def pool_top(self, shard: int, pool_id: str, cycle: str) -> str:
        """This shard's biggest members of the pool in a cycle (a bounded sorted set)."""
        return f"{self.tag(shard)}pt:{pool_id}:{cycle}"

    def pool_members(self, shard: int, pool_id: str) -> str:
        """The pool's members that live in this shard (a set of ICCIDs)."""
        return f"{self.tag(shard)}pm:{pool_id}"

    def pool(self, pool_id: str) -> str:
        """The pool's definition, state and version, in the pool's own shard."""
        return f"{self.tag(self.shard(pool_id))}P:{pool_id}"

    def pool_fanout(self, shard: int) -> str:
        """Pools of this shard whose members must be evaluated again (score: the pool's
        version that asked for it)."""
        return f"{self.tag(shard)}pf"

    def pool_fanout_progress(self, shard: int) -> str:
        """How far each pool's fan-out got in this shard (a hash: pool -> version whose view
        this shard's members were evaluated with): each shard's owner does its own part."""
        return f"{self.tag(shard)}pd"

    def event_prefix(self, shard: int) -> str:
        """``event_seen`` is this plus the event id (``commit.lua`` builds them so)."""
        return f"{self.tag(shard)}e:"

    def event_seen(self, iccid: str, event_id: str) -> str:
        return self.event_prefix(self.shard(iccid)) + event_id

    def due(self, shard: int) -> str:
        return f"{self.tag(shard)}d"

    def stats(self, shard: int) -> str:
        return f"{self.tag(shard)}s"

    def template(self, fingerprint: str) -> str:
        return f"{self.prefix}:pt:{fingerprint}"

    def outbox(self, shard: int) -> str:
        return f"{self.tag(shard)}o"

    def customer(self, customer_id: str) -> str:
        return f"{self.prefix}:cu:{{{customer_id}}}"

    def durability(self, tag: str) -> str:
        """The key a durability barrier writes on the primary that serves hash tag `tag`."""
        return f"{self.prefix}:dur:{{{tag}}}"

    def outbox_lock(self, shard: int) -> str:
        return f"{self.tag(shard)}ol"
