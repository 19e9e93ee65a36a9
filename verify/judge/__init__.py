"""Judging: outputs compared by their kinds, reduced precision by its budget, batch invariance, deployment
preprocessing, and the gate's verdict over every cell. Pure functions of arrays and results."""
