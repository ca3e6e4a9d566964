"""Strategies cut host lanes into batches: serial, parallel(limit), batched(count or %), rolling."""

from __future__ import annotations

import pytest

from kubeforge.plan import Strategy, batched, parallel, rolling, serial

HOSTS = [f"worker-{i}" for i in range(1, 9)]


def test_batched_25_percent_of_8_hosts_is_batches_of_2():
    assert batched("25%").batches(HOSTS) == [HOSTS[0:2], HOSTS[2:4], HOSTS[4:6], HOSTS[6:8]]


def test_batched_by_count_keeps_the_remainder_as_a_last_small_batch():
    assert [len(b) for b in batched(3).batches(HOSTS)] == [3, 3, 2]


def test_a_small_percentage_still_moves_one_host_at_a_time():
    assert [len(b) for b in batched("5%").batches(HOSTS[:3])] == [1, 1, 1]


def test_serial_and_rolling_take_one_host_at_a_time_and_stop_at_once():
    for s in (serial(), rolling()):
        assert s.batches(HOSTS[:3]) == [[h] for h in HOSTS[:3]]
        assert not s.finish_batch


def test_parallel_is_one_batch_limited_in_concurrency():
    s = parallel(3)
    assert s.batches(HOSTS) == [HOSTS]
    assert s.concurrency(len(HOSTS)) == 3
    assert parallel().concurrency(5) == 5


def test_worker_batches_finish_the_batch_on_failure():
    assert batched("50%").finish_batch


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "%", "0%"])
def test_batched_rejects_sizes_that_are_not_positive(bad):
    with pytest.raises(ValueError, match="positive count or percentage"):
        batched(bad)


def test_strategy_round_trips_through_a_dict():
    s = batched("25%", limit=2)
    assert Strategy.from_dict(s.to_dict()) == s


def test_no_hosts_means_no_batches():
    assert batched("25%").batches([]) == []
