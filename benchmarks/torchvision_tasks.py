"""torchvision's detection and segmentation architectures through the converter and the verifier: which formats
convert (and why the others do not) and how each runtime's detections and masks compare with eager PyTorch.

    python benchmarks/torchvision_tasks.py [--models fasterrcnn_mobilenet_v3_large_320_fpn,lraspp_mobilenet_v3_large]
                                           [--folder DIR] [--images N]

Writes a zoo (detectors as `torchvision-detection:<name>`, segmenters with their `out` output as mask logits,
random weights with the realistic initialisation: nothing is downloaded), runs `python -m converter` and
`python -m verify --no-timing` on it in `--folder` (a temporary one unless given) and prints, per model, each format's
conversion (ok, or the first line of its error) and each cell's status and detail. A benchmark, not a test: a real
detector takes minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

DETECTORS = ("fasterrcnn_mobilenet_v3_large_320_fpn", "ssdlite320_mobilenet_v3_large", "retinanet_resnet50_fpn",
             "fcos_resnet50_fpn")
SEGMENTERS = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50")
FORMATS = ["eager", "torchscript", "onnx", "onnx_dynamo", "paddle", "openvino"]


def entry(name: str) -> dict:
    common = {"name": name, "weights": "random", "formats": FORMATS, "deployments": [],
              "arch_args": {"weights_backbone": None}}
    if name in DETECTORS:
        size = 320
        # torchvision's detectors normalise inside the model: they take 0-1 pixels; ONNX at batch 1 (a list of
        # images is unrolled when traced)
        return {**common, "arch": f"torchvision-detection:{name}", "input": {"shape": [3, size, size]},
                "preprocess": {"resize": size, "crop": size, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
                "outputs": [{"name": "boxes", "kind": "boxes"}, {"name": "scores", "kind": "scores"},
                            {"name": "labels", "kind": "labels"}],
                "onnx": {"dynamic_batch": False}}
    return {**common, "arch": f"torchvision:{name}", "outputs": [{"name": "out", "kind": "mask_logits"}]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="fasterrcnn_mobilenet_v3_large_320_fpn,lraspp_mobilenet_v3_large")
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    names = [name for name in args.models.split(",") if name]
    unknown = [name for name in names if name not in DETECTORS + SEGMENTERS]
    if unknown:
        parser.error(f"--models: {unknown} are none of {', '.join(DETECTORS + SEGMENTERS)}")
    folder = args.folder or Path(tempfile.mkdtemp(prefix="torchvision-tasks-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zoo.yaml").write_text(yaml.safe_dump({"models": [entry(name) for name in names]}, sort_keys=False))
    subprocess.run([sys.executable, "-m", "converter", str(folder / "zoo.yaml"), "--out", str(folder / "artifacts")],
                   capture_output=True, text=True)
    verified = subprocess.run([sys.executable, "-m", "verify", "--artifacts", str(folder / "artifacts"), "--zoo",
                               str(folder / "zoo.yaml"), "--report", str(folder / "reports"), "--no-timing",
                               "--num-images", str(args.images)], capture_output=True, text=True)
    manifest = json.loads((folder / "artifacts" / "manifest.json").read_text())
    rows = list(csv.DictReader((folder / "reports" / "parity.csv").read_text().splitlines())) \
        if (folder / "reports" / "parity.csv").is_file() else []
    for name in names:
        print(f"## {name}")
        for artifact, record in manifest["models"][name]["artifacts"].items():
            error = (record.get("error") or "").split(". ")[0][:160]
            print(f"- {artifact}: {record['status']}" + (f" ({error})" if error else ""))
        cells = {}
        for row in rows:
            if row["model"] == name:
                cells.setdefault((row["runtime"], row["artifact"]), (row["cell_status"], row["detail"][:200]))
        for (runtime, artifact), (status, detail) in cells.items():
            print(f"  {runtime} on {artifact}: {status} {detail}")
    print(f"verify exit {verified.returncode}; reports in {folder / 'reports'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
