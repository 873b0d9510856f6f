"""The generative models behind the demo data."""
