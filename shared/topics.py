"""Every Kafka topic of the system, with the key each one is partitioned by.

The key decides what stays ordered when the system scales out by partitions:
- commands are keyed by tenant, so one tenant's commands are applied in the order sent;
- broadcast and run lifecycle events are keyed by broadcast, so a broadcast's story is ordered;
- per-message topics are keyed by recipient, spreading one big broadcast over every partition
  while keeping each message's own attempts in order;
- contract changes are keyed by tenant and contract, so the latest change of a contract wins.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    key: str
    partitions: int
    # A compacted topic keeps the latest record of each key forever: a state, not a history.
    compacted: bool = False


# Public contract: read and written by other services of the platform.
REQUESTS = Topic("broadcast.requests", key="tenant_id", partitions=4)
EVENTS = Topic("broadcast.events", key="broadcast_id", partitions=4)
CONTRACTS = Topic("audience.contracts", key="tenant_id:contract_id", partitions=4)

# Internal: between the four services.
RUNS = Topic("broadcast.runs", key="broadcast_id", partitions=4)
TENANTS = Topic("tenant.settings", key="tenant_id", partitions=4, compacted=True)
RECIPIENTS = Topic("broadcast.recipients", key="recipient_id", partitions=8)
MESSAGES = Topic("broadcast.messages", key="recipient_id", partitions=8)
DELIVERIES = Topic("broadcast.deliveries", key="recipient_id", partitions=8)
DEAD_LETTERS = Topic("broadcast.dead-letters", key="original key", partitions=1)

ALL: tuple[Topic, ...] = (
    REQUESTS,
    EVENTS,
    CONTRACTS,
    RUNS,
    TENANTS,
    RECIPIENTS,
    MESSAGES,
    DELIVERIES,
    DEAD_LETTERS,
)
