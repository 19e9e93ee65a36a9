"""A zoo split into N shards by a hash of each model's name, so a CI job matrix can spread the work: the split
is the same on every machine and run, and adding or removing a model never moves another one."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int  # 1..count
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: K must be between 1 and N")

    def holds(self, model: str) -> bool:
        return shard_of(model, self.count) == self.index

    def select(self, models: Iterable[str]) -> list[str]:
        """The models of this shard, in their given order."""
        return [model for model in models if self.holds(model)]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(model: str, count: int) -> int:
    """The shard (1..count) a model belongs to: sha256 of its name, so no seed or Python hash salt moves it."""
    return int.from_bytes(hashlib.sha256(model.encode("utf-8")).digest()[:8], "big") % count + 1


def parse_shard(text: str) -> Shard:
    """'K/N' (1 <= K <= N) as a Shard; ValueError with the expected form otherwise."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not found or not 1 <= int(found[1]) <= int(found[2]):
        raise ValueError(f"expected K/N with 1 <= K <= N (for example 2/4), got {text!r}")
    return Shard(int(found[1]), int(found[2]))
