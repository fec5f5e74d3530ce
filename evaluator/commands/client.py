"""Client commands for participants and admins: submit, runs, leaderboard, datasets upload, benchmarks create."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from evaluator.client import ApiClient, progress_bar, upload_file
from evaluator.config import Config
from evaluator.errors import ValidationFailed
from evaluator.terminal import json_text, printable, scrub


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-url", help="API base URL (default: EVALUATOR_API_URL or http://API_HOST:API_PORT)")
    common.add_argument("--token", help="API token (default: EVALUATOR_TOKEN)")
    common.add_argument("--json", action="store_true", help="print JSON")

    submit = subparsers.add_parser("submit", parents=[common], help="upload a model bundle to a benchmark")
    submit.add_argument("bundle", type=Path)
    submit.add_argument("--benchmark", required=True)
    submit.add_argument("--name", help="default: the bundle's file name")
    submit.add_argument("--version", default="1")
    submit.add_argument("--wait", action="store_true", help="follow the run until it ends and print its metrics")
    submit.set_defaults(func=cmd_submit)

    runs = subparsers.add_parser("runs", help="list, show, cancel runs and read their logs").add_subparsers(
        dest="runs_command", metavar="ACTION")
    listing = runs.add_parser("list", parents=[common])
    listing.add_argument("--benchmark")
    listing.add_argument("--status")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=cmd_runs_list)
    for action, func in (("show", cmd_runs_show), ("logs", cmd_runs_logs), ("cancel", cmd_runs_cancel)):
        parser = runs.add_parser(action, parents=[common])
        parser.add_argument("run_id")
        parser.set_defaults(func=func)

    board = subparsers.add_parser("leaderboard", parents=[common], help="print a benchmark's leaderboard")
    board.add_argument("benchmark")
    board.set_defaults(func=cmd_leaderboard)

    datasets = subparsers.add_parser("datasets", help="datasets (admin, owner)").add_subparsers(
        dest="datasets_command", metavar="ACTION")
    upload = datasets.add_parser("upload", parents=[common], help="declare a dataset and upload its two files")
    upload.add_argument("--name", required=True)
    upload.add_argument("--version", default="1")
    upload.add_argument("--features", type=Path, required=True)
    upload.add_argument("--labels", type=Path, required=True)
    upload.add_argument("--row-id-column", default="row_id")
    upload.add_argument("--target-column", default="target")
    upload.set_defaults(func=cmd_datasets_upload)

    benchmarks = subparsers.add_parser("benchmarks", help="benchmarks (admin, owner)").add_subparsers(
        dest="benchmarks_command", metavar="ACTION")
    create = benchmarks.add_parser("create", parents=[common], help="create a benchmark over a dataset")
    create.add_argument("id")
    create.add_argument("--dataset", required=True, help="name:version or id")
    create.add_argument("--task", choices=["classification", "regression"], required=True)
    create.add_argument("--primary-metric")
    create.add_argument("--timeout-s", type=int)
    create.add_argument("--memory")
    create.add_argument("--max-bundle-bytes", type=int)
    create.add_argument("--title")
    create.set_defaults(func=cmd_benchmarks_create)


def client_for(args: argparse.Namespace, config: Config) -> ApiClient:
    return ApiClient(args.api_url or config.api_base_url, args.token or config.token)


def _print(args: argparse.Namespace, value: object, render: Callable[[dict], str]) -> None:
    """Print a server reply as JSON, or as the text `render` makes of its escaped copy.

    Every string the server sent reaches `render` scrubbed (single-line, control characters
    shown as escapes), so no field can move the cursor, retitle the terminal or forge a line.
    """
    if args.json:
        print(json_text(value))
    else:
        print(printable(render(scrub(value)), multiline=True))


def cmd_submit(args: argparse.Namespace, config: Config) -> int:
    if not args.bundle.is_file():
        raise ValidationFailed(f"bundle file {args.bundle} does not exist")
    client = client_for(args, config)
    name = args.name or args.bundle.name.split(".")[0]
    submission = client.submit(args.benchmark, args.bundle, name=name, version=args.version,
                               progress=None if args.json else progress_bar(),
                               multipart_threshold=config.multipart_threshold_bytes)
    if not args.wait:
        _print(args, submission, lambda s: f"submitted {s['id']} ({s['key']})")
        return 0
    run = client.wait_for_run(submission["id"], on_status=None if args.json else _status_line)
    if not args.json:
        sys.stderr.write("\n")
    _print(args, run, format_run)
    return 0 if run["status"] == "succeeded" else 1


def _status_line(run: dict) -> None:
    run = scrub(run)
    sys.stderr.write(f"\rrun {run.get('id', '')[:8]} {run['status']:<40}")
    sys.stderr.flush()


def format_run(run: dict) -> str:
    """Return a run as text; every server-provided field is escaped (see evaluator.terminal)."""
    run = scrub(run)
    lines = [f"run {run['id']}  {run['benchmark']}  {run['owner']}  {run['status']}"]
    if run.get("failure"):
        lines.append(f"  failure: {run['failure']['code']}: {run['failure']['message']}")
    document = run.get("metrics") or {}
    for name, value in sorted((document.get("metrics") or {}).items()):
        lines.append(f"  {name:<22} {value:.6f}" if isinstance(value, float) else f"  {name:<22} {value}")
    primary = document.get("primary_metric") or {}
    ci = primary.get("ci") or {}
    if ci.get("low") is not None:
        lines.append(f"  {primary['name']} {ci.get('level', 0.95):.0%} CI [{ci['low']:.6f}, {ci['high']:.6f}] "
                     f"({ci.get('method')}, {ci.get('rounds')} rounds, seed {ci.get('seed')})")
    return "\n".join(lines)


def cmd_runs_list(args: argparse.Namespace, config: Config) -> int:
    page = client_for(args, config).get("/v1/runs", benchmark=args.benchmark, status=args.status, limit=args.limit)
    _print(args, page, _format_runs)
    return 0


def _format_runs(page: dict) -> str:
    rows = [f"{r['id']}  {r['benchmark']:<16} {r['owner']:<12} {r['status']}" for r in page["items"]]
    return "\n".join(rows + [f"({len(rows)} of {page['total']})"])


def cmd_runs_show(args: argparse.Namespace, config: Config) -> int:
    run = client_for(args, config).get(f"/v1/runs/{args.run_id}")
    _print(args, run, format_run)
    return 0


def cmd_runs_logs(args: argparse.Namespace, config: Config) -> int:
    # The model's log as it wrote it, lines and tabs kept; every other control shown as an escape.
    print(printable(client_for(args, config).get(f"/v1/runs/{args.run_id}/logs"), multiline=True), end="")
    return 0


def cmd_runs_cancel(args: argparse.Namespace, config: Config) -> int:
    run = client_for(args, config).post(f"/v1/runs/{args.run_id}/cancel")
    _print(args, run, lambda r: f"run {r['id']} {r['status']}")
    return 0


def format_leaderboard(board: dict) -> str:
    """Return a leaderboard as text; participant names and the rest are escaped."""
    board = scrub(board)
    rules = board["rules"]
    lines = [f"leaderboard {board['benchmark']}  ({rules['metric']}, {rules['direction']})",
             f"{'rank':>4}  {'participant':<16} {'score':>10}  95% CI"]
    for entry in board["entries"]:
        ci = entry.get("ci") or {}
        interval = f"[{ci['low']:.4f}, {ci['high']:.4f}]" if ci.get("low") is not None else "-"
        lines.append(f"{entry['rank']:>4}  {entry['participant']:<16} {entry['score']:>10.6f}  {interval}")
    if not board["entries"]:
        lines.append("   (no succeeded runs yet)")
    return "\n".join(lines)


def cmd_leaderboard(args: argparse.Namespace, config: Config) -> int:
    board = client_for(args, config).get(f"/v1/benchmarks/{args.benchmark}/leaderboard")
    _print(args, board, format_leaderboard)
    return 0


def cmd_datasets_upload(args: argparse.Namespace, config: Config) -> int:
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
        upload_file(dataset["uploads"][part], path, progress=None if args.json else progress_bar())
    dataset.pop("uploads")
    _print(args, dataset, lambda d: f"dataset {d['ref']} uploaded ({d['id']}); it registers from its events")
    return 0


def cmd_benchmarks_create(args: argparse.Namespace, config: Config) -> int:
    limits = {k: v for k, v in (("timeout_s", args.timeout_s), ("memory", args.memory),
                                ("max_bundle_bytes", args.max_bundle_bytes)) if v is not None}
    body = {"id": args.id, "dataset": args.dataset, "task": args.task, "limits": limits}
    if args.primary_metric:
        body["primary_metric"] = args.primary_metric
    if args.title:
        body["title"] = args.title
    benchmark = client_for(args, config).post("/v1/benchmarks", body)
    _print(args, benchmark, lambda b: f"benchmark {b['id']} ({b['task']}, {b['primary_metric']})")
    return 0
