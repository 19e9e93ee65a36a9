"""Latency and throughput of one runner, measured the way benchmark tools do. Timing never changes a verdict.

Warm up until the latency settles (bounded), then time for at least `min_runs` calls and `min_seconds`
(OpenVINO's benchmark_app -t and MLPerf's LoadGen both set a minimum duration and a minimum count), going on
while the 95% interval of the median is wider than `max_interval` and time is left. Each figure carries its
spread, so a report can say when a number is too noisy to stand on.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from converter.core.outputs import Feeds

Z95 = 1.959964
# Latency and a serving batch. A sweep to 32 (--batches 1,8,32) triples the verifier's time on 2 cores:
# ResNet18 takes 0.6 s (ONNX Runtime) to 4 s (paddle-jit) per 32-image call there.
DEFAULT_BATCHES = (1, 8)


@dataclass(frozen=True)
class TimingPolicy:
    warmup_min: int = 2  # calls, at least
    warmup_max: int = 25  # calls, at most, while the latency has not settled
    warmup_max_seconds: float = 1.0
    settled_within: float = 0.10  # the last call within 10% of the median of the three before it
    # 6 calls: the fewest whose distribution-free 95% interval of the median exists (it is then their min to max).
    # A quarter of a second gives a 10 ms call 25; a 70 ms batch of 8 stops at 6 where its interval is already
    # tight (10 calls cost each batch-8 cell 0.3 s more, and a 600 ms paddle-jit batch 2.4 s), and timing goes on
    # while it is wide. Every cell pays this per batch size: it is most of a cold verify's time.
    min_runs: int = 6
    min_seconds: float = 0.25
    max_seconds: float = 3.0  # keep timing up to here while the interval is too wide
    max_interval: float = 0.05  # the 95% interval of the median, relative half-width, that supports a figure
    # A shared VM runs in states that last 5-30 s: on 2 cores here a fixed matmul (the canary) read 180 GFLOP/s,
    # then 150 for 20 s, then 137, and MobileNetV3's batch-1 latency went 1.8 -> 3.0 -> 4.2 ms with it. Each batch
    # waits until the canary is within max_drift of the machine's full speed, and is timed again when the canary
    # after it says the state changed meanwhile.
    max_drift: float = 0.08  # the canary's own jitter is about 4%
    attempts: int = 3
    max_wait_seconds: float = 20.0  # for the machine to come back to full speed, per attempt
    poll_seconds: float = 0.25
    retry_below_seconds: float = 2.0  # a batch that took longer is kept (and marked if it drifted), not redone
    # Waiting for full speed and timing a batch again, in all, per verify run: a neighbour that holds a core for
    # minutes (measured here: the canary at 154-175 instead of 216 for most of a run) would otherwise add minutes.
    # Once it is spent, batches are timed at once and marked when the machine was slow.
    run_wait_seconds: float = 30.0

    def describe(self) -> str:
        return (f"warm-up {self.warmup_min}-{self.warmup_max} calls (until within {self.settled_within:.0%} of the "
                f"previous three, at most {self.warmup_max_seconds:g} s); then at least {self.min_runs} calls and "
                f"{self.min_seconds:g} s per batch, going on up to {self.max_seconds:g} s while the median's 95% "
                f"interval is wider than +-{self.max_interval:.0%}; each batch starts when a matmul canary is within "
                f"{self.max_drift:.0%} of the machine's full speed (waiting up to {self.max_wait_seconds:g} s) and, "
                f"if it took under {self.retry_below_seconds:g} s, is timed again (up to {self.attempts} times) "
                f"when the canary after it (read again {self.poll_seconds:g} s later, once the runtime's threads "
                f"are idle) is not; at most {self.run_wait_seconds:g} s of waiting and timing again per run")

    def __post_init__(self):
        if self.min_runs < 6 or self.warmup_min < 0 or self.warmup_max < self.warmup_min:
            raise ValueError("timing needs min_runs >= 6 (a 95% interval of the median) and "
                             "0 <= warmup_min <= warmup_max")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError("timing needs 0 < min_seconds <= max_seconds")


@dataclass(frozen=True)
class Timing:
    batch: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    cv: float  # coefficient of variation of the timed calls
    ci_low_ms: float  # the 95% interval of the median (distribution-free, from order statistics)
    ci_high_ms: float
    warmup: int  # untimed calls made before these
    seconds: float  # wall time of the timed calls
    stable: bool  # the median's 95% interval within max_interval and the machine at full speed
    drift: float = 0.0  # how far below full speed the machine ran while timing (0.1: 10%); 0: not checked
    attempts: int = 1  # timings taken (the least-drifted one is this)

    @property
    def throughput_ips(self) -> float:
        """Images per second at this batch, from the median (one slow call does not move it)."""
        return self.batch * 1000.0 / self.p50_ms

    @property
    def interval(self) -> float:
        """Relative half-width of the 95% interval of the median."""
        return (self.ci_high_ms - self.ci_low_ms) / (2.0 * self.p50_ms)


def measure(run: Callable[[Feeds], Feeds], feeds: Feeds, policy: TimingPolicy = TimingPolicy(),
            clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time run(feeds). run() returns host arrays, so GPU work is complete when it returns."""
    warmup = warm_up(run, feeds, policy, clock)
    seconds: list[float] = []
    began = clock()
    while True:
        started = clock()
        run(feeds)
        ended = clock()
        seconds.append(ended - started)
        elapsed = ended - began
        if len(seconds) >= policy.min_runs and elapsed >= policy.min_seconds:
            if elapsed >= policy.max_seconds or median_interval(np.array(seconds)) <= policy.max_interval:
                break
    return summarise(np.array(seconds), len(next(iter(feeds.values()))), warmup, clock() - began,
                     policy.max_interval)


@dataclass
class WaitBudget:
    """Seconds left for waiting on the machine's speed (and timing again) in this run."""

    left: float = math.inf

    def spend(self, seconds: float) -> None:
        self.left = max(0.0, self.left - seconds)


def measure_steady(run: Callable[[Feeds], Feeds], feeds: Feeds, policy: TimingPolicy, full_speed: float | None,
                   canary: Callable[[], float] | None = None, clock: Callable[[], float] = time.perf_counter,
                   sleep: Callable[[float], None] = time.sleep,
                   budget: WaitBudget | None = None) -> tuple[Timing, list[float]]:
    """measure() while the machine runs at full speed (the canary's GFLOP/s, `full_speed`; None: the best
    reading here): wait for it before, check it after, time again when it changed meanwhile, keep the attempt
    with the least drift; the waiting and timing again come out of `budget`. Returns that timing and every
    canary reading."""
    canary = canary or canary_speed
    budget = budget if budget is not None else WaitBudget()
    best: Timing | None = None
    readings: list[float] = []

    def drift_of(reading: float) -> float:
        return max(0.0, 1.0 - reading / (full_speed or max(readings)))

    for attempt in range(1, policy.attempts + 1):
        readings.append(canary())
        waited = 0.0
        while drift_of(readings[-1]) > policy.max_drift and waited < policy.max_wait_seconds and budget.left > 0:
            sleep(policy.poll_seconds)
            waited += policy.poll_seconds
            budget.spend(policy.poll_seconds)
            readings.append(canary())
        before = readings[-1]
        timing = measure(run, feeds, policy, clock)
        readings.append(canary())
        if drift_of(readings[-1]) > policy.max_drift:
            # A runtime's thread pool spins for a while after its last call (OpenMP's block time, ONNX Runtime's
            # spinning) and takes a core from the canary: read it again once those threads have gone to sleep.
            sleep(policy.poll_seconds)
            budget.spend(policy.poll_seconds)
            readings.append(canary())
        drift = max(drift_of(before), drift_of(readings[-1]))
        timing = replace(timing, drift=drift, stable=timing.stable and drift <= policy.max_drift)
        if best is None or drift < best.drift:
            best = timing
        if drift <= policy.max_drift or timing.seconds > policy.retry_below_seconds or budget.left <= 0:
            break
        if attempt < policy.attempts:
            budget.spend(timing.seconds)  # what timing it again will take
    return replace(best, attempts=attempt), readings


@dataclass
class MachineSpeed:
    """The machine's full speed over a run: the 90th percentile of every canary reading so far (the best one
    while there are few), so a run that spends half its time in a slow state still knows its fast one."""

    readings: list[float] = field(default_factory=list)
    # The full speed an earlier run on this machine reached: a run spent wholly in a slow state (a neighbour on
    # a core for minutes) otherwise learns the slow state as full speed and marks nothing it timed there.
    known: float | None = None

    def add(self, readings: list[float]) -> None:
        self.readings.extend(readings)

    @property
    def seen(self) -> float | None:
        """This run's own full speed."""
        if len(self.readings) < 10:
            return max(self.readings) if self.readings else None
        return float(np.percentile(self.readings, 90))

    @property
    def full(self) -> float | None:
        return max(filter(None, (self.seen, self.known)), default=None)


_CANARY = np.random.default_rng(0).standard_normal((768, 768)).astype(np.float32)


def canary_speed(calls: int = 10) -> float:
    """GFLOP/s of a small fixed matmul, the fastest of `calls` (about 50 ms in all): the machine's speed now."""
    fastest = math.inf
    for _ in range(calls):
        started = time.perf_counter()
        _CANARY @ _CANARY
        fastest = min(fastest, time.perf_counter() - started)
    return 2.0 * _CANARY.shape[0] ** 3 / fastest / 1e9


def canary_readings(count: int, pause_seconds: float = 0.05) -> list[float]:
    readings = []
    for _ in range(count):
        readings.append(canary_speed())
        time.sleep(pause_seconds)
    return readings


def warm_up(run: Callable[[Feeds], Feeds], feeds: Feeds, policy: TimingPolicy,
            clock: Callable[[], float] = time.perf_counter) -> int:
    """Untimed calls until the latest is within `settled_within` of the median of the three before it
    (caches, allocators and lazy kernel selection have done their work), bounded by count and time."""
    latencies: list[float] = []
    began = clock()
    while len(latencies) < policy.warmup_max:
        started = clock()
        run(feeds)
        latencies.append(clock() - started)
        if len(latencies) >= policy.warmup_min and settled(latencies, policy.settled_within):
            break
        if clock() - began >= policy.warmup_max_seconds and len(latencies) >= policy.warmup_min:
            break
    return len(latencies)


def settled(latencies: list[float], within: float) -> bool:
    if len(latencies) < 4:
        return False
    before = float(np.median(latencies[-4:-1]))
    return abs(latencies[-1] - before) <= within * before


def median_interval(seconds: np.ndarray) -> float:
    low, high = median_bounds(np.sort(seconds))
    median = float(np.median(seconds))
    return (high - low) / (2.0 * median) if median > 0 else math.inf


def median_bounds(ordered: np.ndarray) -> tuple[float, float]:
    """The distribution-free 95% interval of the median, [X(j), X(n+1-j)] of the sorted latencies: it holds
    whatever the latency's distribution (Conover, Practical Nonparametric Statistics, 3.2)."""
    j = _lower_rank(len(ordered))
    return float(ordered[j - 1]), float(ordered[len(ordered) - j])


@functools.lru_cache(maxsize=4096)
def _lower_rank(n: int) -> int:
    """The largest rank j (1-based, at least 1) with P(Binomial(n, 1/2) <= j - 1) <= 2.5%."""
    if n > 1000:  # the normal approximation is exact enough here
        return max(int(math.floor(n / 2.0 - Z95 * math.sqrt(n) / 2.0)), 1)
    total, below, j = 2 ** n, 0, 0
    while True:
        below += math.comb(n, j)  # now P(B <= j) * 2**n
        if below * 40 > total:  # P(B <= j) > 2.5%: rank j + 1 is one too far
            return max(j, 1)
        j += 1


def summarise(seconds: np.ndarray, batch: int, warmup: int = 0, wall: float | None = None,
              max_interval: float = TimingPolicy.max_interval) -> Timing:
    ms = np.sort(seconds * 1000.0)
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    mean = float(ms.mean())
    low, high = median_bounds(ms)
    cv = float(ms.std(ddof=1) / mean) if len(ms) > 1 and mean > 0 else 0.0
    stable = (high - low) / (2.0 * p50) <= max_interval if p50 > 0 else False
    return Timing(batch, len(ms), p50, p90, p99, mean, float(ms[0]), cv, low, high, warmup,
                  float(seconds.sum() if wall is None else wall), stable)


def feeds_of(feeds: Feeds, size: int) -> Feeds:
    return {name: batch_of(array, size) for name, array in feeds.items()}


def batch_of(inputs: np.ndarray, size: int) -> np.ndarray:
    """`size` samples from `inputs`, repeating them when there are fewer."""
    reps = -(-size // len(inputs))
    return np.ascontiguousarray(np.concatenate([inputs] * reps)[:size])
