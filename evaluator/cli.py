"""The `evaluator` command: builds the parser from evaluator.commands and dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from evaluator.config import Config
from evaluator.errors import EvaluatorError
from evaluator.terminal import printable, tolerate_unencodable

# Each module has register(subparsers) that adds its sub-commands with set_defaults(func=...).
# A func takes (args, config) and returns an exit code.
COMMAND_MODULES = (
    "evaluator.commands.db",
    "evaluator.commands.tokens",
    "evaluator.commands.images",
    "evaluator.commands.evaluate",
    "evaluator.commands.worker",
    "evaluator.commands.dev",
    "evaluator.commands.client",
)


def build_parser() -> argparse.ArgumentParser:
    """Collect every command module's sub-commands into one parser."""
    parser = argparse.ArgumentParser(prog="evaluator", description="Batch evaluator for ML models.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as ex:
            if ex.name == name:  # a command family not written yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; expected failures print one line and exit non-zero."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    tolerate_unencodable(sys.stdout, sys.stderr)
    try:
        config = Config.from_env()
        return int(args.func(args, config) or 0)
    except EvaluatorError as ex:
        print(printable(f"error: {ex.code}: {ex.message}"), file=sys.stderr)  # the API's words may be hostile
        return 1
    except KeyboardInterrupt:
        return 130
