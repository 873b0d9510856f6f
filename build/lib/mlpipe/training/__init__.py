"""The Keras model, its input feed and distributed training."""
