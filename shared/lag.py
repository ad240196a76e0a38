"""Consumer lag of the system's consumer groups: what each has not committed yet, per topic."""

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka_security import KafkaSecurity
from shared.topics import ALL, REQUESTS

_SERVICES = ("targeting.", "composer.", "dispatcher.", "tracker.")


async def consumer_lag(bootstrap: str, security: KafkaSecurity) -> dict[tuple[str, str], int]:
    """(topic, group) -> records behind, summed over partitions, for the services' groups."""
    options = security.client_options()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="broadcast-lag", **options)
    ends = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)
    await admin.start()
    await ends.start()
    try:
        groups = [
            g[0] if isinstance(g, tuple) else g.group_id for g in await admin.list_consumer_groups()
        ]
        ours = sorted(g for g in groups if g.startswith(_SERVICES))
        known = {t.name for t in ALL}
        # The request clients' topics too (shared/requesters.py): their names are the
        # operator's configuration, not identifiers. Their answers topics are read by the
        # clients alone, without a group: no service group lags on them.
        clients = f"{REQUESTS.name}."
        lag: dict[tuple[str, str], int] = {}
        for group in ours:
            committed = await admin.list_consumer_group_offsets(group)
            partitions = [
                tp for tp in committed if tp.topic in known or tp.topic.startswith(clients)
            ]
            if not partitions:
                continue
            end = await ends.end_offsets(partitions)
            for tp in partitions:
                behind = max(0, end[tp] - committed[tp].offset)
                lag[(tp.topic, group)] = lag.get((tp.topic, group), 0) + behind
        return lag
    finally:
        await ends.stop()
        await admin.close()
