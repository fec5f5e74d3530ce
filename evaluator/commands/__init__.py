"""Sub-commands of the `evaluator` CLI, one module per family."""
