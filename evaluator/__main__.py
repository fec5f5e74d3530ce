"""`python -m evaluator` runs the CLI."""

from evaluator.cli import main

raise SystemExit(main())
