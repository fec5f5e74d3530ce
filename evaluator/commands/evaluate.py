"""`evaluator evaluate`: run a bundle locally, exactly as a worker would, and print its metrics."""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import uuid

from evaluator.config import Config
from evaluator.errors import ValidationFailed
from evaluator.terminal import json_text, printable, scrub

LOG_LINES_ON_FAILURE = 40


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a model bundle on local files in the sandbox, and score it",
        description="Validate the bundle, predict in a locked-down container (no network, no labels), "
                    "score against the labels outside it. Exit status 0 only when the run succeeded.")
    parser.add_argument("--bundle", type=pathlib.Path, required=True, help=".tar.gz or .zip with evaluator.yaml")
    parser.add_argument("--features", type=pathlib.Path, required=True, help="Parquet or CSV, with the row id column")
    parser.add_argument("--labels", type=pathlib.Path, required=True, help="Parquet or CSV: row id + target")
    parser.add_argument("--task", choices=["classification", "regression"], required=True)
    parser.add_argument("--row-id-column", default="row_id")
    parser.add_argument("--target-column", default="target")
    parser.add_argument("--metrics", help="comma-separated metric names (default: all of the task)")
    parser.add_argument("--primary-metric")
    parser.add_argument("--timeout-s", type=float, help="default: EVALUATOR_SANDBOX_TIMEOUT_S")
    parser.add_argument("--memory", help="e.g. 2g (default: EVALUATOR_SANDBOX_MEMORY)")
    parser.add_argument("--cpus", type=float, help="default: EVALUATOR_SANDBOX_CPUS")
    parser.add_argument("--log", type=pathlib.Path, help="also write the sandbox log to this file")
    parser.add_argument("--predictions", type=pathlib.Path, help="also write predictions.parquet to this file")
    parser.add_argument("--json", action="store_true", help="print the run record as JSON")
    parser.set_defaults(func=cmd_evaluate)


def _config(args: argparse.Namespace, config: Config) -> Config:
    changes: dict = {}
    if args.timeout_s is not None:
        changes["sandbox_timeout_s"] = args.timeout_s
    if args.memory:
        changes["sandbox_memory"] = args.memory
    if args.cpus is not None:
        changes["sandbox_cpus"] = args.cpus
    return config.replace(**changes) if changes else config


def cmd_evaluate(args: argparse.Namespace, config: Config) -> int:
    # NOTE: imported here, not at the top: pyarrow and the Docker SDK would slow every `evaluator --help`.
    from evaluator.evaluation import evaluate_bundle, new_work_dir
    from evaluator.failures import LOCAL_RUN_PREFIX
    from evaluator.sandbox.runner import DockerSandbox, connect
    from evaluator.settings import Scoring

    for name in ("bundle", "features", "labels"):
        if not getattr(args, name).is_file():
            raise ValidationFailed(f"--{name} {getattr(args, name)} is not a file", field=name)
    config = _config(args, config)
    sandbox = DockerSandbox(connect())
    run_id = f"{LOCAL_RUN_PREFIX}{uuid.uuid4().hex[:12]}"
    work_dir = new_work_dir(config, run_id)
    quiet = args.json
    try:
        evaluation = evaluate_bundle(
            args.bundle, args.features, args.labels, sandbox=sandbox, config=config, work_dir=work_dir, run_id=run_id,
            scoring=Scoring(args.task, row_id_column=args.row_id_column, target_column=args.target_column,
                            metrics=tuple(args.metrics.split(",")) if args.metrics else None,
                            primary_metric=args.primary_metric),
            on_stage=None if quiet else lambda stage: print(f"{stage}...", file=sys.stderr, flush=True),
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if args.log:
        args.log.write_bytes(evaluation.log)
    if args.predictions and evaluation.predictions is not None:
        args.predictions.write_bytes(evaluation.predictions)
    if args.json:
        print(json_text(evaluation.to_record()))
    if not evaluation.succeeded:
        failure = evaluation.failure or {}
        if not quiet and evaluation.log:
            # Split on newlines only: a \r, \x85 or \u2028 of the model's is shown, never obeyed.
            tail = evaluation.log.decode("utf-8", "replace").rstrip("\n").split("\n")[-LOG_LINES_ON_FAILURE:]
            print("--- sandbox log (tail) ---", printable("\n".join(tail), multiline=True), "---", sep="\n",
                  file=sys.stderr)
        print(printable(f"error: {failure.get('code')}: {failure.get('message')}"), file=sys.stderr)
        return 1
    if not quiet:
        _print_metrics(evaluation.metrics or {}, evaluation.provenance)
    return 0


def _print_metrics(document: dict, provenance: dict) -> None:
    document, provenance = scrub(document), scrub(provenance)  # names and values can come from the model
    primary = document.get("primary_metric") or {}
    print(f"{provenance.get('bundle', {}).get('name')} on {document.get('n_rows')} rows "
          f"({provenance.get('image')}, {provenance.get('durations_s', {}).get('running')}s in the sandbox)")
    for name, value in (document.get("metrics") or {}).items():
        marker = "*" if name == primary.get("name") else " "
        shown = f"{value:.6g}" if isinstance(value, float) else json_text(value, indent=None)
        print(f"{marker} {name:<28} {shown}")
