"""The `mlpipe` command: one module per command group, each with add(commands) and its handlers."""
