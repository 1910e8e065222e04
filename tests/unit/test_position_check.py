"""What the consumer concludes, on the embedded broker, from a partition's position and ends."""

from __future__ import annotations

from aiokafka import TopicPartition

from sagaline.kafka.brokers import STALL_S, PositionCheck, Verdict

TP = TopicPartition("orchestrator.response", 3)


Observation = (
    tuple[float, int | None, int, int | None] | tuple[float, int | None, int, int | None, int]
)


def checks(check: PositionCheck, *observations: Observation) -> list[Verdict]:
    """(time, position, listed end, fetched end[, committed]) per check, in order; the committed
    offset is asked for only when the check wants it, as the consumer does (None: lost)."""
    verdicts = []
    for now, position, listed, fetched, *rest in observations:
        wanted = check.wants_committed(TP, position, listed, now)
        committed = rest[0] if rest and wanted else None
        verdicts.append(check.judge(TP, position, listed, fetched, committed, now))
    return verdicts


def test_a_consumer_at_the_end_is_fine_however_long_it_waits() -> None:
    seen = checks(PositionCheck(0), *[(t * 2.0, 40, 40, 40) for t in range(60)])
    assert set(seen) == {Verdict.FINE}


def test_a_moving_position_behind_the_end_is_fine() -> None:
    seen = checks(
        PositionCheck(0), *[(t * 2.0, 10 * t, 10 * t + 500, 10 * t + 500) for t in range(60)]
    )
    assert set(seen) == {Verdict.FINE}


def test_a_position_past_the_fetched_end_twice_is_a_re_created_partition() -> None:
    seen = checks(PositionCheck(0), (0, 50, 3, 3), (2, 50, 3, 3))
    assert seen == [Verdict.FINE, Verdict.RE_CREATED]


def test_a_position_past_the_fetched_end_once_is_not_believed() -> None:
    """The fetched end catches up with a live partition's next fetch."""
    seen = checks(PositionCheck(0), (0, 50, 48, 48), (2, 52, 52, 52), (4, 52, 52, 52))
    assert seen == [Verdict.FINE] * 3


def test_an_idle_partition_listed_behind_its_committed_position_is_fine_forever() -> None:
    """The embedded broker lists the last batch's first offset + 1 as the end: an idle consumer
    that has read and committed everything is past it, and must not read it all again."""
    seen = checks(PositionCheck(0), *[(t * 2.0, 10, 1, 10, 10) for t in range(300)])
    assert set(seen) == {Verdict.FINE}


def test_an_idle_partition_asks_for_its_committed_offset_once_per_stall_period() -> None:
    check = PositionCheck(0)
    asked = []
    for t in range(60):
        now = t * 2.0
        asked.append(check.wants_committed(TP, 10, 1, now))
        check.judge(TP, 10, 1, 10, 10 if asked[-1] else None, now)
    assert 0 < sum(asked) <= 60 * 2.0 / STALL_S + 1


def test_a_listed_end_behind_a_still_position_is_a_re_created_partition_in_time() -> None:
    """Fetches that never report the new end (the fetched end is the old one) do not hide it,
    when the broker lost the group's committed offset with the partition."""
    times = [t * 2.0 for t in range(int(STALL_S / 2) + 2)]
    seen = checks(PositionCheck(0), *[(t, 60, 12, 60) for t in times])
    assert Verdict.RE_CREATED in seen
    first = seen.index(Verdict.RE_CREATED)
    assert times[first] >= STALL_S and set(seen[:first]) == {Verdict.FINE}


def test_a_listed_end_that_lags_a_moment_is_fine() -> None:
    seen = checks(
        PositionCheck(0), (0, 60, 55, 60), (2, 60, 55, 60), (4, 61, 61, 61), (6, 61, 61, 61)
    )
    assert set(seen) == {Verdict.FINE}


def test_records_waiting_behind_a_still_position_are_a_stalled_client() -> None:
    times = [t * 2.0 for t in range(int(STALL_S / 2) + 2)]
    seen = checks(PositionCheck(0), *[(t, 5, 80, 80) for t in times])
    first = seen.index(Verdict.STALLED)
    assert times[first] >= STALL_S and set(seen[:first]) == {Verdict.FINE}


def test_after_a_verdict_the_partition_is_judged_afresh() -> None:
    check = PositionCheck(0)
    checks(check, (0, 50, 3, 3), (2, 50, 3, 3))
    assert checks(check, (4, 0, 3, 3), (6, 3, 3, 3)) == [Verdict.FINE, Verdict.FINE]


def test_a_position_that_stays_unknown_is_a_stalled_client() -> None:
    """A partition whose position is never reset (being fetched from the coordinator)."""
    times = [t * 2.0 for t in range(int(STALL_S / 2) + 2)]
    seen = checks(PositionCheck(0), *[(t, None, 80, None) for t in times])
    first = seen.index(Verdict.STALLED)
    assert times[first] >= STALL_S and set(seen[:first]) == {Verdict.FINE}


def test_a_position_unknown_for_a_moment_is_fine() -> None:
    seen = checks(PositionCheck(0), (0, None, 80, None), (2, 0, 80, 80), (4, 40, 80, 80))
    assert set(seen) == {Verdict.FINE}
