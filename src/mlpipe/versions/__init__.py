"""Model versions and experiments: GTO tags, their comparison, promotion and storage, and sweeps."""
