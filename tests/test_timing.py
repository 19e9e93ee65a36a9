"""The timing method, on a fake clock and fake runtimes: no model, no real time."""
from __future__ import annotations

import numpy as np
import pytest

from verify.cells.peak import describe_peak
from verify.cells.timing import (MachineSpeed, TimingPolicy, measure, measure_steady, median_bounds, median_interval,
                           summarise, warm_up)


class FakeRuntime:
    """A runtime whose calls take `latencies` seconds in turn (the last one repeating), on a fake clock."""

    def __init__(self, latencies: list[float]):
        self.latencies, self.now, self.calls = latencies, 0.0, 0

    def clock(self) -> float:
        return self.now

    def run(self, feeds):
        self.now += self.latencies[min(self.calls, len(self.latencies) - 1)]
        self.calls += 1
        return feeds


FEEDS = {"input": np.zeros((8, 3), np.float32)}


def test_the_interval_of_the_median_is_the_exact_distribution_free_one():
    # n=10: ranks 2 and 9 (P = 97.9%); n=100: ranks 40 and 61 (Conover's table)
    assert median_bounds(np.arange(1.0, 11.0)) == (2.0, 9.0)
    assert median_bounds(np.arange(1.0, 101.0)) == (40.0, 61.0)
    assert median_bounds(np.arange(1.0, 6.0)) == (1.0, 5.0)  # too few calls for better than the whole range
    assert median_interval(np.full(30, 0.01)) == 0.0


def test_warm_up_goes_on_until_the_latency_settles_and_stops_at_its_bound():
    # lazy kernel selection at a new batch size: the first calls are slow (the eager cell that read 1.8x slow)
    slow_start = FakeRuntime([1.0, 0.5, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert warm_up(slow_start.run, FEEDS, TimingPolicy(warmup_max_seconds=10), slow_start.clock) == 6
    never = FakeRuntime([0.01 * (1 + (i % 2)) for i in range(100)])  # alternates 10/20 ms: never settles
    policy = TimingPolicy(warmup_max=12)
    assert warm_up(never.run, FEEDS, policy, never.clock) == 12


def test_measure_takes_at_least_the_minimum_calls_and_duration():
    fast = FakeRuntime([0.001])  # 1 ms calls: the minimum duration decides
    timing = measure(fast.run, FEEDS, TimingPolicy(min_runs=10, min_seconds=1.0), fast.clock)
    assert timing.runs in (1000, 1001) and timing.batch == 8 and timing.p50_ms == pytest.approx(1.0)
    assert timing.stable and timing.interval == pytest.approx(0.0)
    slow = FakeRuntime([0.4])  # 400 ms calls: the minimum count decides
    timing = measure(slow.run, FEEDS, TimingPolicy(min_runs=10, min_seconds=1.0), slow.clock)
    assert timing.runs == 10 and timing.seconds == pytest.approx(4.0)


def test_a_noisy_cell_is_timed_longer_and_marked_when_it_stays_noisy():
    noisy = FakeRuntime([0.02 if i % 2 else 0.01 for i in range(10_000)])  # half the calls twice as slow
    policy = TimingPolicy(warmup_min=0, warmup_max=0, min_runs=10, min_seconds=0.5, max_seconds=3.0)
    timing = measure(noisy.run, FEEDS, policy, noisy.clock)
    assert timing.seconds >= 3.0 and not timing.stable and timing.interval > policy.max_interval


def test_throughput_comes_from_the_median_so_one_slow_call_does_not_move_it():
    seconds = np.array([0.1] * 9 + [1.0])  # one call 10x slow, as a page-fault storm or a busy neighbour does
    timing = summarise(seconds, batch=8)
    assert timing.throughput_ips == pytest.approx(80.0)  # the mean would say 42
    assert timing.mean_ms == pytest.approx(190.0) and timing.cv > 1.0


def test_timing_waits_for_full_speed_and_is_taken_again_when_the_machine_slowed_meanwhile():
    runtime = FakeRuntime([0.01])
    # slow state first (waited out), then an attempt that ends slow and is still slow a moment later (redone),
    # then a clean one
    readings = iter([70.0, 72.0, 99.0, 70.0, 71.0, 100.0, 99.0])
    policy = TimingPolicy(warmup_min=0, warmup_max=0, min_runs=10, min_seconds=0.1)
    waits = []
    timing, canaries = measure_steady(runtime.run, FEEDS, policy, full_speed=100.0, canary=lambda: next(readings),
                                      clock=runtime.clock, sleep=waits.append)
    assert timing.attempts == 2 and timing.drift == pytest.approx(0.01) and timing.stable
    assert canaries == [70.0, 72.0, 99.0, 70.0, 71.0, 100.0, 99.0] and len(waits) == 3
    # a machine faster than its full speed so far is not drift
    faster = iter([120.0, 130.0])
    timing, _ = measure_steady(runtime.run, FEEDS, policy, full_speed=100.0, canary=lambda: next(faster),
                               clock=runtime.clock, sleep=waits.append)
    assert timing.drift == 0.0 and timing.attempts == 1


def test_a_slow_canary_right_after_timing_is_read_again_before_the_batch_is_redone():
    # the runtime's thread pool still spins just after its last call (measured: Paddle Inference's canary read
    # half speed right after timing and full speed a moment later, and every batch was timed twice)
    runtime, waits = FakeRuntime([0.01]), []
    readings = iter([99.0, 55.0, 98.0])
    policy = TimingPolicy(warmup_min=0, warmup_max=0, min_runs=10, min_seconds=0.1)
    timing, canaries = measure_steady(runtime.run, FEEDS, policy, full_speed=100.0, canary=lambda: next(readings),
                                      clock=runtime.clock, sleep=waits.append)
    assert timing.attempts == 1 and timing.stable and timing.drift == pytest.approx(0.02)
    assert canaries == [99.0, 55.0, 98.0] and waits == [policy.poll_seconds]


def test_a_machine_that_stays_slow_is_timed_anyway_and_marked():
    runtime, waits = FakeRuntime([0.01]), []
    policy = TimingPolicy(warmup_min=0, warmup_max=0, min_runs=10, min_seconds=0.1, max_wait_seconds=1.0)
    timing, _ = measure_steady(runtime.run, FEEDS, policy, full_speed=100.0, canary=lambda: 60.0,
                               clock=runtime.clock, sleep=waits.append)
    assert timing.attempts == policy.attempts and not timing.stable and timing.drift == pytest.approx(0.4)
    assert sum(waits) == pytest.approx(policy.attempts * (policy.max_wait_seconds + policy.poll_seconds))  # bounded
    # a batch that takes long is kept and marked, not redone: a paddle-jit batch of 8 takes 10 s on 2 cores
    slow_runtime = FakeRuntime([1.0])
    timing, _ = measure_steady(slow_runtime.run, FEEDS, policy, full_speed=100.0, canary=lambda: 60.0,
                               clock=slow_runtime.clock, sleep=waits.append)
    assert timing.attempts == 1 and not timing.stable and timing.seconds == pytest.approx(10.0)


def test_full_speed_is_the_fast_state_even_when_the_machine_is_often_slow():
    speed = MachineSpeed()
    assert speed.full is None
    speed.add([150.0, 180.0])
    assert speed.full == 180.0  # few readings: the best
    speed.add([150.0] * 10 + [180.0] * 8)
    assert speed.full == pytest.approx(180.0)  # half the readings slow: still the fast state


def test_policy_refuses_settings_that_cannot_give_a_median_interval():
    with pytest.raises(ValueError):
        TimingPolicy(min_runs=2)
    with pytest.raises(ValueError):
        TimingPolicy(min_seconds=5.0, max_seconds=1.0)


def test_the_peak_is_the_best_kernel_and_names_the_others():
    described = describe_peak({"numpy matmul": 190.0, "onnxruntime Conv": 215.0})
    assert described["peak_fp32_gflops"] == 215.0
    assert described["peak_fp32_kernel"].startswith("onnxruntime Conv (others: numpy matmul 190")
    assert describe_peak({})["peak_fp32_gflops"] is None


def test_the_runs_waiting_is_bounded_and_later_batches_are_timed_at_once():
    # a neighbour holds a core for the whole run: without a bound every batch waits and is timed three times
    from verify.cells.timing import WaitBudget

    runtime, waits = FakeRuntime([0.01]), []
    policy = TimingPolicy(warmup_min=0, warmup_max=0, min_runs=10, min_seconds=0.1, max_wait_seconds=1.0)
    budget = WaitBudget(1.5)
    first, _ = measure_steady(runtime.run, FEEDS, policy, full_speed=100.0, canary=lambda: 60.0,
                              clock=runtime.clock, sleep=waits.append, budget=budget)
    # the budget, plus the short re-read after each timing that tells a spinning thread pool from a neighbour
    assert budget.left == 0 and sum(waits) <= 1.5 + first.attempts * policy.poll_seconds and not first.stable
    waits.clear()
    later, canaries = measure_steady(runtime.run, FEEDS, policy, full_speed=100.0, canary=lambda: 60.0,
                                     clock=runtime.clock, sleep=waits.append, budget=budget)
    assert later.attempts == 1 and later.drift == pytest.approx(0.4) and not later.stable
    assert waits == [policy.poll_seconds]  # only the re-read after timing


def test_a_run_that_stays_slow_is_measured_against_the_speed_an_earlier_run_reached(tmp_path):
    from verify.cells.speed_memory import REMEMBER_HOURS, remember_speed, remembered_speed

    path, machine = tmp_path / "machine-speed.json", {"cpu": "EPYC", "version.torch": "2.14.1"}
    assert remembered_speed(path, machine) is None
    remember_speed(path, machine, seen=216.0, known=None, now=1000.0)
    assert remembered_speed(path, machine, now=2000.0) == 216.0
    assert remembered_speed(path, {**machine, "cpu": "Xeon"}, now=2000.0) is None  # another machine
    assert remembered_speed(path, machine, now=1000.0 + REMEMBER_HOURS * 3600 + 1) is None  # not confirmed lately
    # a whole run beside a neighbour: its own full speed is the slow state, the remembered one is the bar
    speed = MachineSpeed(known=remembered_speed(path, machine, now=2000.0))
    speed.add([186.0] * 20)
    assert speed.seen == pytest.approx(186.0) and speed.full == 216.0
    remember_speed(path, machine, seen=speed.seen, known=speed.known, now=3000.0)  # a slow run confirms nothing
    assert remembered_speed(path, machine, now=1000.0 + REMEMBER_HOURS * 3600 + 1) is None
    remember_speed(path, machine, seen=210.0, known=216.0, now=3000.0)  # close enough: confirmed again
    assert remembered_speed(path, machine, now=1000.0 + REMEMBER_HOURS * 3600 + 1) == 216.0
    path.write_text("{not json")
    assert remembered_speed(path, machine) is None
