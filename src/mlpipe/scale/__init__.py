"""Past one machine, on existing engines: Dask for batch scoring, tf.distribute for training."""
