"""A consumer group is stalled when records wait and its committed offset stops moving."""

from aiokafka import TopicPartition

from shared.readiness import Stalls

TP = TopicPartition("broadcast.recipients", 3)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_partition_with_waiting_records_and_no_commit_for_long_is_stalled() -> None:
    clock = Clock()
    stalls = Stalls(120, clock)
    assert stalls.stalled("composer.recipients", {TP: 10}, {TP: 50}) == []
    clock.now = 119
    assert stalls.stalled("composer.recipients", {TP: 10}, {TP: 50}) == []
    clock.now = 120
    assert stalls.stalled("composer.recipients", {TP: 10}, {TP: 60}) == [
        "composer.recipients on broadcast.recipients[3]"
    ]


def test_progress_or_an_empty_partition_is_not_a_stall() -> None:
    clock = Clock()
    stalls = Stalls(120, clock)
    stalls.stalled("g", {TP: 10}, {TP: 50})
    clock.now = 200
    assert stalls.stalled("g", {TP: 11}, {TP: 50}) == []  # it moved: the clock starts again
    clock.now = 300
    assert stalls.stalled("g", {TP: 11}, {TP: 50}) == []  # 100 s since it moved
    clock.now = 1000
    assert stalls.stalled("g", {TP: 50}, {TP: 50}) == []  # nothing waits
    clock.now = 5000
    assert stalls.stalled("g", {TP: 50}, {TP: 50}) == []
