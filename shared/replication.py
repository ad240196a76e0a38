"""How many copies of each partition the cluster keeps, from how many brokers it has.

Pure and standard-library only: the topic creator (shared/admin.py) and the local runner's
broker configuration (deploy/local/stack/kafka.py, run by the system python) apply one rule.
"""

from dataclasses import dataclass

# Three copies survive the loss of one broker while a second is being restarted or replaced;
# more would cost disk and network without changing what a loss of one broker does.
MAX_FACTOR = 3


@dataclass(frozen=True, slots=True)
class Replication:
    factor: int
    # An acks=all write needs this many in-sync copies: with 3 copies, 2 means one broker may be
    # down and writes go on, yet no acknowledged write lives on a single disk.
    min_insync: int


def replication_for(brokers: int) -> Replication:
    """min(3, brokers) copies; a min ISR of 2 with 3 copies, else 1 (fewer copies cannot lose a
    broker and keep accepting acks=all writes with a min ISR of 2). ValueError below 1 broker."""
    if brokers < 1:
        raise ValueError(f"a cluster has at least one broker, not {brokers}")
    factor = min(MAX_FACTOR, brokers)
    return Replication(factor=factor, min_insync=2 if factor == MAX_FACTOR else 1)
