"""The `evaluator` command: builds the parser from evaluator.commands and dispatches.

Building the parser imports only the command modules, which keep their heavy imports
(pyarrow, docker, requests, peewee) inside the functions that run a command: `--help`
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from evaluator.config import Config
from evaluator.errors import ConfigInvalid, EvaluatorError
from evaluator.terminal import json_text, printable, tolerate_unencodable

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
    "evaluator.commands.catalog",
    "evaluator.commands.teams",
    "evaluator.commands.store",
    "evaluator.commands.healthcheck",
)

EXIT_SUCCEEDED, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_STATUS_HELP = """\
exit status:
  0  succeeded (for `submit --wait` and `evaluate`: the run succeeded)
  1  the run, or an uploaded dataset, failed; the message says why
  2  usage or authentication: a bad argument, a missing or refused token, a request the API refused
  3  the platform is unreachable or failing (API, object store, database), after retrying

Errors are one line on stderr (`error: CODE: message`); with --json, {"error": {"code", "message"}} on stdout."""


def build_parser() -> argparse.ArgumentParser:
    """Collect every command module's sub-commands into one parser."""
    parser = argparse.ArgumentParser(prog="evaluator", description="Batch evaluator for ML models.",
                                     epilog=EXIT_STATUS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
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


def exit_status(ex: EvaluatorError) -> int:
    """Map an error to the documented exit status (see EXIT_STATUS_HELP)."""
    explicit = getattr(ex, "exit_status", None)
    if explicit is not None:
        return int(explicit)
    if ex.code == "config_invalid":
        return EXIT_USAGE
    return EXIT_UNREACHABLE if ex.http_status >= 500 else EXIT_USAGE


def report(ex: EvaluatorError, *, as_json: bool) -> None:
    """Print an error as one escaped line on stderr, or as a JSON error body on stdout."""
    if as_json:
        print(json_text({"error": {"code": ex.code, "message": ex.message}}))
    else:
        print(printable(f"error: {ex.code}: {ex.message}"), file=sys.stderr)  # the API's words may be hostile


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; expected failures print one line and exit with a documented status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    tolerate_unencodable(sys.stdout, sys.stderr)
    as_json = bool(getattr(args, "json", False))
    try:
        config = Config.from_env()
    except ValueError as ex:  # a malformed EVALUATOR_* number names its variable
        report(ConfigInvalid(str(ex)), as_json=as_json)
        return EXIT_USAGE
    try:
        return int(args.func(args, config) or 0)
    except EvaluatorError as ex:
        report(ex, as_json=as_json)
        return exit_status(ex)
    except KeyboardInterrupt:
        return 130
