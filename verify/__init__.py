"""Parity Workbench verifier: identical inputs through every runtime, parity and timing reports, CI gate."""
