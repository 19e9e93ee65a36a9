"""Parity Workbench converter: zoo.yaml -> eager, TorchScript, ONNX and Paddle artifacts + manifest."""
