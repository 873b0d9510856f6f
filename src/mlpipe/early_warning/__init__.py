"""The early-warning pipeline's stages: a student's history in, dropout risk by cutoff week out."""
