"""Markdown tables and numbers, the way every report writes them."""
from __future__ import annotations

import math


def number(value, fmt: str = "{:.2e}") -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    def clean(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(clean(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(clean(v) for v in row) + " |" for row in rows]
    return out
