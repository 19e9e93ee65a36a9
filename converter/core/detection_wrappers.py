"""torchvision's detectors as models of fixed-shape tensors. They take a list of images and return, per image, a
dict of boxes, scores and labels as long as what that image found; no exporter can give that a fixed output, and
the verifier compares detections per sample. Wrapped, a batch (N, 3, H, W) of 0-1 pixels gives boxes
(N, slots, 4), scores (N, slots) and labels (N, slots); the empty slots score -1 and have label -1. The zoo names
one as `torchvision-detection:<name>`."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PaddedDetections(nn.Module):
    """`detector` (torchvision's, in eval mode) with its detections padded to `slots` per image, the most a
    torchvision detector keeps per image (its detections_per_img, 100 by default). Its state dict is the detector's
    own, so a torchvision checkpoint loads as it is."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector
        heads = getattr(detector, "roi_heads", detector)
        self.slots = int(getattr(heads, "detections_per_img", 100))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        found = self.detector(list(images.unbind(0)))
        boxes, scores, labels = [], [], []
        for image in found:
            missing = self.slots - image["scores"].shape[0]
            boxes.append(F.pad(image["boxes"], (0, 0, 0, missing)))
            scores.append(F.pad(image["scores"], (0, missing), value=-1.0))
            labels.append(F.pad(image["labels"], (0, missing), value=-1))
        return torch.stack(boxes), torch.stack(scores), torch.stack(labels)

    def state_dict(self, *args, **kwargs):
        return self.detector.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.detector.load_state_dict(state_dict, strict=strict, assign=assign)


def torchvision_detection_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models.detection)


def torchvision_detector(name: str):
    """The factory of torchvision's detector `name`, wrapped."""
    import torchvision

    return lambda **kwargs: PaddedDetections(torchvision.models.get_model(name, **kwargs).eval())
