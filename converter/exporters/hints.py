"""The known ways each exporter fails, as a one-line cause and what to do next. The raw error stays in the
manifest (`error_detail`) and behind --verbose; the hint is what people read first."""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Hint:
    artifacts: tuple[str, ...]  # the artifacts it applies to; () for any
    pattern: str  # searched in the raw error
    says: str  # cause and next step; {0}, {1}... are the pattern's groups


WAIVE = "or waive it (allow_failures: [{{artifact: {artifact}, reason: ...}}])"
HINTS = (
    Hint(("paddle",), r"unsupported ops ([\w:, ]+)",
         "x2paddle 1.6 cannot convert {0}: drop paddle from this model's formats " + WAIVE),
    Hint(("paddle",), r"ReshapeOp is invalid|InvalidArgumentError.*shape",
         "x2paddle fixed the batch size at the traced one (1) in a reshape, so the batch-3 check failed: build "
         "and check batch 1 only (onnx: {{dynamic_batch: false}}) " + WAIVE),
    Hint(("torchscript",), r"TracingCheckError",
         "torch.jit.trace gives other graphs on other inputs (TracingCheckError: Python control flow or state "
         "in forward): use torchscript: {{method: script}}, drop torchscript from formats " + WAIVE),
    Hint(("onnx",), r"Exporting the operator '?([\w:.]+)'? to ONNX",
         "the ONNX exporter has no mapping for {0} at this opset: raise onnx.opset (up to 23) " + WAIVE),
    Hint(("onnx_simplified",), r"onnxsim's own output check failed",
         "onnxsim's own output check failed (its simplified model disagrees with the raw one): set "
         "onnx: {{simplify: false}} " + WAIVE),
    Hint(("tvm",), r"converting the ONNX operator Resize",
         "TVM 0.27's Relax ONNX frontend cannot import a Resize whose output size is computed from the dynamic "
         "batch (an Upsample by size): upsample by scale_factor in the model, drop tvm from formats " + WAIVE),
    Hint((), r"^timeout: ", "the export did not finish in time: raise limits.timeout_s in the zoo (or --timeout)"),
    Hint((), r"^out-of-memory: ",
         "the export ran out of memory: raise limits.memory_mb in the zoo (or --memory-limit-mb; 0 for none)"),
)


def explain(artifact: str, raw: str) -> str | None:
    """The hint for a raw one-line error, or None when the failure is not a known kind."""
    for hint in HINTS:
        if hint.artifacts and artifact not in hint.artifacts:
            continue
        found = re.search(hint.pattern, raw)
        if found:
            return hint.says.format(*(g.strip() for g in found.groups()), artifact=artifact)
    return None
