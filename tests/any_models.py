"""Small models that are not single-image classifiers, importable as zoo factories: token ids and a mask in, two
inputs, dict outputs, a fully convolutional net of any height and width, and one that bakes its export size in."""
from __future__ import annotations

import torch
import torch.nn as nn


class TextClassifier(nn.Module):
    """Token embedding + position embedding + nn.TransformerEncoder + mean over the unmasked tokens + a head."""

    def __init__(self, vocab: int = 100, dim: int = 16, classes: int = 4, max_length: int = 64, layers: int = 1):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Embedding(max_length, dim)
        layer = nn.TransformerEncoderLayer(dim, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.embed(input_ids) + self.position(positions).unsqueeze(0)
        x = self.encoder(x, src_key_padding_mask=attention_mask == 0)
        weights = attention_mask.unsqueeze(-1).to(x.dtype)
        return self.head((x * weights).sum(1) / weights.sum(1))


class MaskIgnoring(TextClassifier):
    """A fault: the padding mask is not applied, so a padded sample's answer depends on its padding."""

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.encoder(self.embed(input_ids) + self.position(positions).unsqueeze(0))
        return self.head(x.mean(1)) + 0 * attention_mask.sum()


def text_classifier(**kwargs) -> nn.Module:
    return TextClassifier(**kwargs)


def mask_ignoring(**kwargs) -> nn.Module:
    return MaskIgnoring(**kwargs)


def _block(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1), nn.BatchNorm2d(outputs), nn.ReLU())


class FullyConvolutional(nn.Module):
    """An FCN-style segmenter: a strided backbone, a 1x1 classifier, and logits upsampled to the input's size."""

    def __init__(self, classes: int = 3, width: int = 8):
        super().__init__()
        self.backbone = nn.Sequential(_block(3, width), _block(width, width * 2, 2), _block(width * 2, width * 2, 2))
        self.classifier = nn.Conv2d(width * 2, classes, 1)

    def forward(self, x):
        logits = self.classifier(self.backbone(x))
        return nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def fully_convolutional(**kwargs) -> nn.Module:
    return FullyConvolutional(**kwargs)


def _pooled_features(width: int) -> nn.Sequential:
    """Two conv blocks, then one vector per image (width * 2 features)."""
    return nn.Sequential(_block(3, width), _block(width, width * 2, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class ImageAndMetadata(nn.Module):
    """Two inputs: an image and a metadata vector, joined before the head."""

    def __init__(self, classes: int = 5, width: int = 8, metadata: int = 6):
        super().__init__()
        self.features = _pooled_features(width)
        self.metadata = nn.Linear(metadata, width)
        self.head = nn.Linear(width * 3, classes)

    def forward(self, image, metadata):
        return self.head(torch.cat([self.features(image), torch.relu(self.metadata(metadata))], dim=1))


def image_and_metadata(**kwargs) -> nn.Module:
    return ImageAndMetadata(**kwargs)


class EmbeddingAndLogits(nn.Module):
    """Returns a dict: an embedding (for retrieval) and class logits."""

    def __init__(self, classes: int = 5, width: int = 8, dim: int = 12):
        super().__init__()
        self.features = _pooled_features(width)
        self.project = nn.Linear(width * 2, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        embedding = self.project(self.features(x))
        return {"embedding": embedding, "logits": self.head(torch.relu(embedding))}


def embedding_and_logits(**kwargs) -> nn.Module:
    return EmbeddingAndLogits(**kwargs)


class BakedSize(nn.Module):
    """Flattens its feature map with sizes read as Python ints: a trace (TorchScript, the TorchScript-based ONNX
    exporter) writes the export size into the Reshape, and torch.export specialises the input to it."""

    def __init__(self, classes: int = 4, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(_block(3, width), _block(width, width, 2))
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        features = self.features(x)
        n, c, h, w = features.shape
        flat = features.reshape(n, int(c), int(h) * int(w))
        return self.head(flat.mean(-1))


def baked_size(**kwargs) -> nn.Module:
    return BakedSize(**kwargs)
