"""Live monitoring of served models: the prediction log joined with outcomes, drift, verdicts."""
