"""Repair: find the fix for a cell that fails or drifts, and prove it with the same gate."""
