"""The packaged model: its layout, ONNX and SavedModel graphs, card, lineage, signature and reference data."""
