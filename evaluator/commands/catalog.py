"""Client commands for data owners: `evaluator datasets upload|list|show`, `benchmarks create|list|show|update`.

A dataset upload waits for its registration, so a bad file is reported to who uploaded it
(exit status 1 with the reason) instead of failing the first participant's run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from evaluator.commands.client import client_for, common_options, print_reply
from evaluator.config import Config
from evaluator.errors import EvaluatorError, ValidationFailed


class DatasetInvalid(EvaluatorError):
    """Raised when an uploaded dataset registered as invalid; the CLI exits 1 with the reason."""

    code = "dataset_invalid"
    exit_status = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    common = common_options()
    datasets = subparsers.add_parser("datasets", help="datasets (admin, owner)").add_subparsers(
        dest="datasets_command", metavar="ACTION")
    upload = datasets.add_parser(
        "upload", parents=[common], help="declare a dataset, upload its two files and wait until it is ready",
        description="Features: the row id column and the feature columns. Labels: the row id and target "
                    "columns. Same row ids in both, unique. CSV or Parquet. Exit status 1 when it registers "
                    "invalid (the reason is printed).")
    upload.add_argument("--name", required=True)
    upload.add_argument("--version", default="1")
    upload.add_argument("--features", type=Path, required=True)
    upload.add_argument("--labels", type=Path, required=True)
    upload.add_argument("--row-id-column", default="row_id")
    upload.add_argument("--target-column", default="target")
    upload.add_argument("--wait-s", type=float, default=300, help="how long to wait for registration (0: do not)")
    upload.set_defaults(func=cmd_datasets_upload)
    datasets.add_parser("list", parents=[common], help="your datasets and their status").set_defaults(
        func=cmd_datasets_list)
    show = datasets.add_parser("show", parents=[common], help="one dataset: status, reason, rows, hashes")
    show.add_argument("dataset", help="name:version or id")
    show.set_defaults(func=cmd_datasets_show)

    benchmarks = subparsers.add_parser("benchmarks", help="benchmarks (admin, owner)").add_subparsers(
        dest="benchmarks_command", metavar="ACTION")
    create = benchmarks.add_parser("create", parents=[common], help="create a benchmark over a ready dataset")
    create.add_argument("id")
    create.add_argument("--dataset", required=True, help="name:version or id")
    create.add_argument("--task", choices=["classification", "regression"], required=True)
    create.add_argument("--primary-metric")
    create.add_argument("--timeout-s", type=int)
    create.add_argument("--memory")
    create.add_argument("--max-bundle-bytes", type=int)
    create.add_argument("--title")
    create.set_defaults(func=cmd_benchmarks_create)
    benchmarks.add_parser("list", parents=[common], help="benchmarks you may see").set_defaults(
        func=cmd_benchmarks_list)
    show = benchmarks.add_parser("show", parents=[common], help="one benchmark's definition")
    show.add_argument("id")
    show.set_defaults(func=cmd_benchmarks_show)
    update = benchmarks.add_parser("update", parents=[common],
                                   help="repoint a benchmark to another ready dataset, or change its scoring")
    update.add_argument("id")
    update.add_argument("--dataset", help="name:version or id (must be ready)")
    update.add_argument("--primary-metric")
    update.add_argument("--metrics", help="comma-separated metric names")
    update.add_argument("--title")
    update.set_defaults(func=cmd_benchmarks_update)


def cmd_datasets_upload(args: argparse.Namespace, config: Config) -> int:
    from evaluator.client import upload_file
    from evaluator.progress import upload_bar

    for path in (args.features, args.labels):
        if not path.is_file():
            raise ValidationFailed(f"file {path} does not exist")
    suffix = args.features.suffix.lstrip(".").lower()
    client = client_for(args, config)
    dataset = client.post("/v1/datasets", {"name": args.name, "version": args.version,
                                           "format": "csv" if suffix == "csv" else "parquet",
                                           "row_id_column": args.row_id_column, "target_column": args.target_column,
                                           "sizes": {"features": args.features.stat().st_size,
                                                     "labels": args.labels.stat().st_size}})
    for part, path in (("features", args.features), ("labels", args.labels)):
        upload_file(dataset["uploads"][part], path, progress=None if args.json else upload_bar())
    dataset.pop("uploads")
    if args.wait_s > 0:
        dataset = _wait_registered(client, dataset, args.wait_s)
    print_reply(args, dataset, _format_uploaded)
    return 0


def _wait_registered(client, dataset: dict, wait_s: float) -> dict:
    from evaluator.client import Unreachable
    from evaluator.terminal import printable

    deadline = time.monotonic() + wait_s
    while dataset["status"] == "pending":
        if time.monotonic() > deadline:
            raise Unreachable(f"dataset {dataset['ref']} is still pending after {wait_s:g}s: no worker registered "
                              "it (are the workers running? is the store's webhook set? `evaluator reconcile`)")
        time.sleep(0.5)
        dataset = client.get(f"/v1/datasets/{dataset['id']}")
    if dataset["status"] != "ready":
        raise DatasetInvalid(printable(f"dataset {dataset['ref']} is {dataset['status']}: {dataset.get('reason')}; "
                                       "fix the files and upload them as a new --version"))
    return dataset


def _format_uploaded(dataset: dict) -> str:
    if dataset["status"] == "pending":
        return f"dataset {dataset['ref']} uploaded ({dataset['id']}); it registers from its upload events"
    return (f"dataset {dataset['ref']} ready: {dataset['row_count']} rows, labels sha256 "
            f"{(dataset.get('labels_sha256') or '')[:12]}... ({dataset['id']})")


def cmd_datasets_list(args: argparse.Namespace, config: Config) -> int:
    page = client_for(args, config).get("/v1/datasets")
    print_reply(args, page, _format_datasets)
    return 0


def _format_datasets(page: dict) -> str:
    rows = [f"{d['ref']:<24} {d['status']:<8} {d.get('row_count') or '-':>8} rows  {d.get('owner') or '-':<12} "
            f"{d.get('reason') or ''}".rstrip() for d in page["items"]]
    return "\n".join(rows or ["(no datasets)"])


def cmd_datasets_show(args: argparse.Namespace, config: Config) -> int:
    dataset = client_for(args, config).get(f"/v1/datasets/{args.dataset}")
    print_reply(args, dataset, _format_fields)
    return 0


def _format_fields(value: dict) -> str:
    return "\n".join(f"{key:<20} {item}" for key, item in value.items() if item not in (None, "", [], {}))


def cmd_benchmarks_create(args: argparse.Namespace, config: Config) -> int:
    limits = {k: v for k, v in (("timeout_s", args.timeout_s), ("memory", args.memory),
                                ("max_bundle_bytes", args.max_bundle_bytes)) if v is not None}
    body = {"id": args.id, "dataset": args.dataset, "task": args.task, "limits": limits}
    if args.primary_metric:
        body["primary_metric"] = args.primary_metric
    if args.title:
        body["title"] = args.title
    benchmark = client_for(args, config).post("/v1/benchmarks", body)
    print_reply(args, benchmark, lambda b: f"benchmark {b['id']} ({b['task']}, {b['primary_metric']}) "
                                           f"on {b['dataset']}")
    return 0


def cmd_benchmarks_list(args: argparse.Namespace, config: Config) -> int:
    page = client_for(args, config).get("/v1/benchmarks")
    print_reply(args, page, lambda p: "\n".join(
        [f"{b['id']:<24} {b['dataset']:<20} {b['task']:<15} {b['primary_metric']:<18} {b['visibility']}"
         for b in p["items"]] or ["(no benchmarks)"]))
    return 0


def cmd_benchmarks_show(args: argparse.Namespace, config: Config) -> int:
    benchmark = client_for(args, config).get(f"/v1/benchmarks/{args.id}")
    print_reply(args, benchmark, _format_fields)
    return 0


def cmd_benchmarks_update(args: argparse.Namespace, config: Config) -> int:
    body: dict = {}
    if args.dataset:
        body["dataset"] = args.dataset
    if args.primary_metric:
        body["primary_metric"] = args.primary_metric
    if args.metrics:
        body["metrics"] = [name.strip() for name in args.metrics.split(",") if name.strip()]
    if args.title:
        body["title"] = args.title
    if not body:
        raise ValidationFailed("nothing to change: give --dataset, --primary-metric, --metrics or --title")
    benchmark = client_for(args, config).patch(f"/v1/benchmarks/{args.id}", body)
    print_reply(args, benchmark, lambda b: f"benchmark {b['id']} ({b['task']}, {b['primary_metric']}) "
                                           f"on {b['dataset']}")
    return 0
