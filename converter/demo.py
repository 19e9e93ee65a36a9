"""python -m converter.demo [--out PATH]: write the demo fine-tuned checkpoint the default zoo uses.

It has the shape of a checkpoint users actually have: a resnet18 with a 2-class head (ants, bees),
briefly trained, saved as {"epoch", "model_state_dict", "optimizer_state_dict", "loss"}. Deterministic;
an existing file is kept unless --force.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from .core.files import atomic_write

DEFAULT_PATH = Path("artifacts/demo/checkpoint_14_epoch.pkl")


def make_checkpoint(path: Path, seed: int = 14, steps: int = 2) -> Path:
    import torch

    from .models import image_batch, instantiate, realistic_init
    from .zoo import Preprocess

    model = instantiate("torchvision:resnet18", {"num_classes": 2}, seed=seed)
    realistic_init(model, seed, Preprocess(), batches=2, batch_size=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    loss = torch.tensor(0.0)
    for step in range(steps):
        images = image_batch(Preprocess(), 8, seed=seed * 100 + step)
        labels = torch.randint(0, 2, (8,), generator=generator)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
    model.eval()
    checkpoint = {"epoch": 14, "model_state_dict": model.state_dict(),
                  "optimizer_state_dict": optimizer.state_dict(), "loss": float(loss.detach())}
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return atomic_write(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m converter.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--force", action="store_true", help="rewrite an existing file")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"demo checkpoint: {args.out} (kept)")
        return 0
    print(f"demo checkpoint: {make_checkpoint(args.out)} (written)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
