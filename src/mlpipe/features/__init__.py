"""The feature plan: declared columns, fitted on the training split, compiled to numpy, ONNX and Keras."""
