"""The engine's base: params, files written atomically, a stage's run, errors and shared decisions."""
