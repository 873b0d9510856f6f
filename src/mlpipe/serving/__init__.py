"""Serving below its public API (:mod:`mlpipe.predictor`): the input schema and its one check."""
