"""Latency and throughput of one runner. Timing never changes a verdict."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Timing:
    batch: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput_ips: float  # images per second at this batch size


def measure(run: Callable[[Feeds], Feeds], feeds: Feeds, warmup: int, runs: int) -> Timing:
    """`warmup` untimed calls, then `runs` timed ones. run() returns host arrays, so GPU work is complete."""
    for _ in range(warmup):
        run(feeds)
    seconds = np.empty(runs)
    for index in range(runs):
        started = time.perf_counter()
        run(feeds)
        seconds[index] = time.perf_counter() - started
    return summarise(seconds, len(next(iter(feeds.values()))))


def summarise(seconds: np.ndarray, batch: int) -> Timing:
    ms = seconds * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    mean = float(ms.mean())
    return Timing(batch, len(ms), float(p50), float(p90), float(p99), mean, batch / (mean / 1000.0))


def feeds_of(feeds: Feeds, size: int) -> Feeds:
    return {name: batch_of(array, size) for name, array in feeds.items()}


def batch_of(inputs: np.ndarray, size: int) -> np.ndarray:
    """`size` samples from `inputs`, repeating them when there are fewer."""
    reps = -(-size // len(inputs))
    return np.ascontiguousarray(np.concatenate([inputs] * reps)[:size])
