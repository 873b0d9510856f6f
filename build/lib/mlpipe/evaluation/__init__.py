"""Metrics, baselines, the gate and plots: how a trained model is judged."""
