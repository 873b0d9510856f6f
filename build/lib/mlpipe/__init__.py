"""mlpipe: reproducible DVC pipelines for tabular and time-ordered data (stages here, parts below)."""
