"""python -m verify.predict IMAGE...: load one converted artifact in one runtime, as a deployment would, and print
what the model's task predicts for each image (a classifier: its top-k classes with their names and softmax
probabilities).

`Predictor` is the same thing as a library: the zoo's preprocessing inside, so a service can reuse it:

    predictor = Predictor(Path("artifacts"), "bees-vs-ants", runtime="onnxruntime", artifact="onnx_int8")
    predictor.predict([PIL.Image.open("photo.jpg")], topk=2)   # [[("bees", 0.93), ("ants", 0.07)]]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from converter.core.cli import EXIT_OK, EXIT_USAGE
from converter.core.errors import WorkbenchError
from converter.core.images import IMAGE_SUFFIXES, preprocess, read_rgb
from converter.core.registry import load_object
from converter.core.vocabulary import RUNTIMES
from converter.manifest import integrity_problem, read_manifest

from .cells.environment import physical_cores
from .cells.timing import Timing, summarise
from .plan.entries import resolve_entries
from .plan.inputs import ImageSet, load_images
from .runners import Availability, LoadRequest
from .tasks import task_named


class PredictError(WorkbenchError):
    """The artifact, the runtime or the images cannot be used as asked."""


class Predictor:
    """One model's artifact, loaded in one runtime on one device; `predict` takes PIL images."""

    def __init__(self, artifacts: Path, model: str | None = None, runtime: str = "onnxruntime",
                 artifact: str | None = None, device: str = "cpu", threads: int = 0, zoo: Path | None = None):
        manifest = read_manifest(artifacts)
        if model is None:
            if len(manifest.models) != 1:
                raise PredictError(f"{artifacts / 'manifest.json'} has {len(manifest.models)} models: choose one "
                                   f"with --model ({', '.join(manifest.models)})")
            model = next(iter(manifest.models))
        if model not in manifest.models:
            raise PredictError(f"--model: '{model}' is not in {artifacts / 'manifest.json'} "
                               f"(has: {', '.join(manifest.models)})")
        if runtime not in RUNTIMES:
            raise PredictError(f"--runtime: {RUNTIMES.unknown(runtime)}")
        record = manifest.models[model]
        spec = RUNTIMES[runtime]
        built = [a for a in spec.artifacts if a in record.artifacts and record.artifacts[a].ok]
        if artifact is None:
            if not built:
                raise PredictError(f"model '{model}' has no artifact that {runtime} loads ({', '.join(spec.artifacts)})")
            artifact = built[0]
        if artifact not in spec.artifacts:
            raise PredictError(f"--artifact: {runtime} does not load '{artifact}' (it loads "
                               f"{', '.join(spec.artifacts)})")
        if artifact not in built:
            raise PredictError(f"--artifact: '{artifact}' of model '{model}' was not built (built: "
                               f"{', '.join(a for a, r in record.artifacts.items() if r.ok)})")
        if device not in spec.devices:
            raise PredictError(f"--device: {runtime} runs on {', '.join(spec.devices)}, not '{device}'")
        problem = integrity_problem(record, artifact, artifacts)
        if problem:
            raise PredictError(f"{model}/{artifact}: {problem}")
        runner_class = load_object(spec.runner)
        unavailable = runner_class.unavailable(device, Availability.probe())
        if unavailable:
            raise PredictError(f"{runtime}@{device}: {unavailable}")
        self.entry = resolve_entries(manifest, zoo, str(artifacts / "manifest.json"))[model].entry
        image, self.task = self.entry.image_input, task_named(self.entry.task_name)
        if image is None or len(self.entry.model_inputs) > 1 or not self.task.predicts:
            raise PredictError(f"model '{model}' is not a model of one image whose task predicts (its inputs: "
                               f"{', '.join(self.entry.input_names)}; task: {self.task.name}): predict shows a "
                               "task's predictions on images; python -m verify checks any model")
        self.input = image.name
        self.model, self.runtime, self.artifact, self.device = model, runtime, artifact, device
        self.classes = self.entry.class_names()
        self.runner = runner_class()
        self.runner.load(LoadRequest(artifacts / record.artifacts[artifact].path, device, threads or physical_cores(),
                                     self.entry.input_names, tuple(self.entry.output_names), record.trusted_pickle))

    def class_name(self, index: int) -> str:
        return self.classes[index] if self.classes and index < len(self.classes) else str(index)

    def outputs(self, images: list) -> dict[str, np.ndarray]:
        batch = preprocess(images, self.entry.preprocess)
        return self.runner.run({self.input: batch})

    def predict(self, images: list, topk: int = 5, batch_size: int = 8) -> list[list[tuple[str, float]]]:
        """Per image, its task's top-k (label, value), best first (a classifier: class name, softmax
        probability); `batch_size` images per call."""
        found = []
        for start in range(0, len(images), batch_size):
            found += self.task.predict(self.entry, self.outputs(images[start:start + batch_size]), topk,
                                       self.class_name)
        return found

    def benchmark(self, images: list, batch_size: int = 1, runs: int = 30, warmup: int = 5) -> Timing:
        """Median and p90 latency of one call on `batch_size` images (preprocessing excluded)."""
        batch = preprocess([images[i % len(images)] for i in range(batch_size)], self.entry.preprocess)
        feeds = {self.input: batch}
        for _ in range(warmup):
            self.runner.run(feeds)
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            self.runner.run(feeds)
            seconds.append(time.perf_counter() - start)
        return summarise(np.asarray(seconds), batch_size, warmup)


def read_images(paths: list[Path]) -> ImageSet:
    """Image files and folders (every image in them, or in their class subfolders), read when predicted: a large
    folder is never held whole. Each file is checked readable here."""
    from PIL import UnidentifiedImageError

    names, files = [], []
    for path in paths:
        if path.is_dir():
            found = load_images(path)
            names += [str(path / name) for name in found.names]
            files += found.paths
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            try:
                read_rgb(path)
            except (UnidentifiedImageError, OSError) as exc:
                raise PredictError(f"{path}: not a readable image ({exc})") from None
            names.append(str(path))
            files.append(path)
        else:
            raise PredictError(f"{path}: no such image file or folder ({', '.join(IMAGE_SUFFIXES)})")
    return ImageSet(names, f"{len(names)} images", paths=files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verify.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="the converter's output folder")
    parser.add_argument("--model", help="the model's name in the manifest (needed when it has several)")
    parser.add_argument("--runtime", default="onnxruntime", help=f"one of: {', '.join(RUNTIMES)}")
    parser.add_argument("--artifact", help="which of the runtime's artifacts (default: the first built)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8, help="images per call")
    parser.add_argument("--threads", type=int, default=0, help="0: the physical cores")
    parser.add_argument("--benchmark", action="store_true", help="also time the loaded artifact at --batch-size")
    args = parser.parse_args(argv)
    if args.topk < 1 or args.batch_size < 1:
        print("error: --topk and --batch-size must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        images = read_images(args.images)
        names = images.names
        predictor = Predictor(args.artifacts, args.model, args.runtime, args.artifact, args.device, args.threads)
        results = predictor.predict(images, args.topk, args.batch_size)
        timing = predictor.benchmark(images, args.batch_size) if args.benchmark else None
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{predictor.model}: {predictor.runtime} on {predictor.artifact} ({predictor.device})")
    for name, found in zip(names, results):
        print(f"{name}: " + "  ".join(f"{rank}. {label} {probability:.3f}"
                                      for rank, (label, probability) in enumerate(found, 1)))
    if timing is not None:
        print(f"benchmark: batch {timing.batch}: p50 {timing.p50_ms:.2f} ms, p90 {timing.p90_ms:.2f} ms, "
              f"{timing.throughput_ips:.1f} images/s (preprocessing excluded)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
