"""The report's Repairs section: a pure function of the repairs."""
from __future__ import annotations

from ..report.tables import table


def repairs_section(repairs: list) -> list[str]:
    """What each repair tried, with its result and time, what worked, and the zoo change that makes it permanent."""
    if not repairs:
        return []
    zoo = f"`{repairs[0].zoo}`"
    lines = ["", "## Repairs", "",
             "`--repair` searched each failing cell it can for its fix (another route for a float32 artifact, the "
             "fewest nodes in float32 for an int8 or fp16 one) and proved what it found with the gate: "
             f"{zoo} with the change, converted and verified again. The verdict above is the run's as it was.", ""]
    for repair in repairs:
        lines += [f"### {repair.model}: {repair.artifact} on {repair.runtime}: {repair.status}", "",
                  f"- failed with: {repair.before}", f"- {repair.summary}"]
        if repair.method:
            lines.append(f"- searched: {repair.method}, {repair.seconds:.0f} s in all")
        if repair.costliest:
            lines.append("- costliest nodes alone in reduced precision (1 - cosine): "
                         + ", ".join(f"`{node}` {cost:.3g}" for node, cost in repair.costliest))
        if repair.repro:
            lines.append(f"- minimal repro: {repair.repro}")
        if repair.latency_ms:
            lines.append(_speed(repair.latency_ms, repair.latency_batch))
        if repair.attempts:
            routes = any(a.label for a in repair.attempts)
            lines += ["", *table(["route" if routes else "nodes in float32", "result", "seconds", "detail"],
                                 [[a.label if routes else str(a.kept), "pass" if a.passed else "fail",
                                   f"{a.seconds:.1f}", a.detail] for a in repair.attempts])]
        if repair.snippet:
            lines += ["", f"The change for the model's entry in {zoo} (`--write-zoo` writes it):", "", "```yaml",
                      *repair.snippet.rstrip("\n").splitlines(), "```"]
        lines.append("")
    return lines


def _speed(latency: dict[str, float], batch: int) -> str:
    """The three builds' latency and how much of the reduced precision's speed-up over fp32 the mixed one keeps."""
    fp32, mixed = latency.get("fp32"), latency.get("mixed")
    reduced = next((value for key, value in latency.items() if key not in ("fp32", "mixed")), None)
    name = next((key for key in latency if key not in ("fp32", "mixed")), "reduced")
    parts = [f"{key} {value:.1f} ms" for key, value in latency.items()]
    text = f"- ONNX Runtime on a batch of {batch}, this machine, the median of 5 runs: " + ", ".join(parts)
    if fp32 and reduced and mixed:
        if reduced >= fp32:
            text += f" ({name} is no faster than fp32 here: there is no speed-up to keep)"
        else:
            kept = (fp32 - mixed) / (fp32 - reduced)
            text += f" (the mixed model keeps {max(kept, 0):.0%} of {name}'s speed-up)"
    return text
