"""Build the reference torch model a zoo entry describes: architecture, weights, realistic random init."""
from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .core.archs import instantiate, named_weights
from .core.checkpoints import extract_state_dict, load_checkpoint, load_state_dict_strict
from .core.errors import ModelLoadError
from .core.images import preprocess as preprocess_images, synthetic_images
from .core.samples import sample_feeds
from .zoo import ModelEntry, Preprocess

# Image seeds kept apart from the verifier's default set (seed 0), so calibration never sees test inputs.
CALIBRATION_SEED = 1_000_003
EXAMPLE_SEED = 2_000_003


@dataclass
class BuiltModel:
    module: nn.Module  # in eval mode, on CPU, float32
    source_kind: str  # see ModelEntry.source_kind
    weights_sha256: str
    trusted_pickle: bool


def build_model(entry: ModelEntry) -> BuiltModel:
    kind = entry.source_kind
    if kind == "torchscript":
        module = torch.jit.load(entry.checkpoint, map_location="cpu")
    elif kind == "pickled_module":
        module = load_checkpoint(Path(entry.checkpoint), trust_pickle=True)
        if not isinstance(module, nn.Module):
            raise ModelLoadError(
                f"checkpoint {entry.checkpoint}: holds {type(module).__name__}, not a whole model; "
                "give arch to load it as a state_dict"
            )
    elif kind == "state_dict":
        checkpoint = Path(entry.checkpoint)
        state = extract_state_dict(load_checkpoint(checkpoint, entry.trust_pickle), checkpoint, entry.state_dict_key)
        module = instantiate(entry.arch, entry.model_kwargs, seed=entry.seed)
        load_state_dict_strict(module, state, checkpoint)
    elif kind == "random":
        module = instantiate(entry.arch, entry.model_kwargs, seed=entry.seed)
        realistic_init(module, entry.seed, entry.preprocess, entry.calibration.batches, entry.calibration.batch_size,
                       samples=None if entry.inputs is None else lambda count, seed: example_args(entry, count, seed))
    else:  # named-weights: validated to be on this machine, so nothing is downloaded
        weights = named_weights(entry.arch, entry.weights).value
        module = instantiate(entry.arch, {**entry.model_kwargs, "weights": weights}, seed=entry.seed)
    module = module.float().eval()
    check_finite(module)
    return BuiltModel(module, kind, weights_sha256(module), entry.trust_pickle and kind in ("torchscript", "pickled_module"))


def realistic_init(module: nn.Module, seed: int, preprocess: Preprocess, batches: int, batch_size: int,
                   samples: Callable[[int, int], tuple[torch.Tensor, ...]] | None = None) -> None:
    """Seeded Kaiming fan-in init of every conv and linear layer, then BatchNorm statistics re-estimated.

    torchvision's default init gives degenerate logits for many models (std ~1e-14 for efficientnet_b0,
    exactly 0 for vit_b_16 whose head is zero-initialised), so parity checks on them pass vacuously.
    The statistics are estimated on preprocessed natural-looking images, the kind of input the verifier
    feeds: calibrating on zero-mean noise instead left efficientnet_b0 with a common logit offset of ~500
    on real images, too flat for any tolerance to mean something.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
                if layer.bias is not None:
                    bound = 1.0 / math.sqrt(fan_in)
                    layer.bias.copy_((torch.rand(layer.bias.shape, generator=generator) * 2 - 1) * bound)
    # `samples(count, seed)`: the model's inputs where they are not one image (see converter.core.samples)
    make = samples or (lambda count, at: (image_batch(preprocess, count, seed=at),))
    recalibrate_batchnorm(module, [make(batch_size, CALIBRATION_SEED + seed * 1000 + i) for i in range(batches)])


def recalibrate_batchnorm(module: nn.Module, batches: list[tuple[torch.Tensor, ...]]) -> None:
    """Cumulative-average BatchNorm statistics over calibration batches; everything else stays in eval mode
    (no dropout or stochastic depth during calibration)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    module.eval()
    saved_momentum = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average
        norm.train()
    with torch.no_grad():
        for batch in batches:
            module(*batch)
    for norm, momentum in zip(norms, saved_momentum):
        norm.momentum = momentum
    module.eval()


def image_batch(preprocess: Preprocess, count: int, seed: int) -> torch.Tensor:
    """`count` synthetic natural-looking images through the model's own preprocessing, NCHW float32."""
    return torch.from_numpy(preprocess_images(synthetic_images(count, seed), preprocess))


def check_declaration(entry: ModelEntry, module: nn.Module) -> None:
    """The zoo's inputs and outputs against the model itself, before anything is exported: forward takes that many
    inputs (in that order, where it names them alike), a tokens input's ids fit the largest embedding, and the
    model returns the declared outputs. ModelLoadError naming the field otherwise."""
    declared = entry.input_names
    try:
        signature = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):  # a TorchScript module, a C++ forward: nothing to read
        signature = []
    parameters = [p for p in signature if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if signature and not any(p.kind == p.VAR_POSITIONAL for p in signature):
        required = [p.name for p in parameters if p.default is p.empty]
        names = [p.name for p in parameters]
        if not len(required) <= len(declared) <= len(names):
            raise ModelLoadError(f"inputs: the zoo declares {len(declared)} input(s) ({', '.join(declared)}); "
                                 f"forward takes {', '.join(names) or 'none'}")
        # the exporters give the inputs the zoo's names, so they may differ from forward's; a name that forward
        # has at another position is an input declared out of order
        if any(name in names and names.index(name) != index for index, name in enumerate(declared)):
            raise ModelLoadError(f"inputs: the zoo declares {', '.join(declared)}; forward takes "
                                 f"{', '.join(names)}, in that order")
    embeddings = [m.num_embeddings for m in module.modules() if isinstance(m, nn.Embedding)]
    for index, spec in enumerate(entry.model_inputs):
        if spec.kind == "tokens" and embeddings and spec.vocab > max(embeddings):
            raise ModelLoadError(f"inputs.{index}.vocab: ids up to {spec.vocab - 1}, but the model's largest "
                                 f"embedding has {max(embeddings)} rows")
    from .core.outputs import OutputMismatch, named_outputs

    try:
        with torch.no_grad():
            named_outputs(module(*example_args(entry, 2)), entry.output_names)
    except OutputMismatch as exc:
        raise ModelLoadError(f"outputs: {exc}") from None
    except (IndexError, RuntimeError) as exc:
        raise ModelLoadError(f"the model fails on the declared inputs ({', '.join(declared)}): "
                             f"{' '.join(str(exc).split())[:200]}") from None


def check_finite(module: nn.Module) -> None:
    for name, tensor in module.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelLoadError(f"non-finite weights in {name}")


def weights_sha256(module: nn.Module) -> str:
    """Identity of the weights: names, dtypes, shapes and bytes of every state_dict entry, in order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def example_args(entry: ModelEntry, batch: int = 1, seed: int | None = None,
                 point: dict[str, int] | None = None) -> tuple[torch.Tensor, ...]:
    """Deterministic example inputs in forward's order (default: the first point of the shape sweep), used to trace
    and to sanity-check exported artifacts."""
    feeds = sample_feeds(entry, batch, EXAMPLE_SEED + entry.seed if seed is None else seed, point)
    return tuple(torch.from_numpy(array) for array in feeds.values())
