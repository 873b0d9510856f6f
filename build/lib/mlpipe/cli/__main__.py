"""``python -m mlpipe.cli``: the ``mlpipe`` command."""

from mlpipe.cli.main import main

raise SystemExit(main())
