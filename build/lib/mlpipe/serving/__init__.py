"""Serving below its public API (:mod:`mlpipe.serving.predictor`): the input schema and its one check."""
