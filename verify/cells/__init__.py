"""Running the cells: each model's cells in isolated workers (session), their timings and the machine's speed,
the cell cache, and the localisation of a failing cell's first diverging layer."""
