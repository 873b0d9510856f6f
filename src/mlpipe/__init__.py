"""mlpipe: a reproducible DVC pipeline for tabular Keras models.

Each DVC stage in ``dvc.yaml`` is a module here with the stage's name (``simulate``, ``ingest``,
``validate``, ``preprocess``, ``train``, ``evaluate``); the rest are small library modules
(``params``, ``io``, ``stage``, ``features``, ``model``).
"""

__version__ = "0.1.0"
