"""Client commands for participants: login, submit, runs, leaderboard (datasets and benchmarks: catalog.py).

Imports stay light here (argparse and our own small modules): the parser of every command
is built for `evaluator --help`; requests and the rest load when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from evaluator.config import Config
from evaluator.errors import ValidationFailed
from evaluator.terminal import json_text, printable, scrub

if TYPE_CHECKING:
    from evaluator.client import ApiClient


def common_options() -> argparse.ArgumentParser:
    """The options every API command takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-url", help="API base URL (default: EVALUATOR_API_URL, the saved login, or "
                                          "http://API_HOST:API_PORT)")
    common.add_argument("--token", help="API token (default: EVALUATOR_TOKEN or the saved login)")
    common.add_argument("--json", action="store_true", help="print JSON (errors too: {\"error\": {...}})")
    return common


def register(subparsers: argparse._SubParsersAction) -> None:
    common = common_options()

    login = subparsers.add_parser("login", help="save the API URL and a token (mode 600), so neither is exported",
                                  description="Check the token against the API and save both in "
                                              "$XDG_CONFIG_HOME/evaluator/config.json (EVALUATOR_CLIENT_CONFIG_FILE). "
                                              "The token is read from stdin unless --token is given.")
    login.add_argument("--api-url", help="default: EVALUATOR_API_URL or http://API_HOST:API_PORT")
    login.add_argument("--token", help="default: read from stdin (prompted for on a terminal)")
    login.set_defaults(func=cmd_login)
    subparsers.add_parser("logout", help="forget the saved login").set_defaults(func=cmd_logout)

    submit = subparsers.add_parser("submit", parents=[common],
                                   help="upload a model bundle (.tar.gz, .tgz, .zip) or a predictions file "
                                        "(.csv, .parquet) to a benchmark")
    submit.add_argument("bundle", type=Path, metavar="FILE")
    submit.add_argument("--benchmark", required=True)
    submit.add_argument("--name", help="default: the bundle's file name")
    submit.add_argument("--version", default="1")
    submit.add_argument("--baseline", action="store_true",
                        help="a reference entry of the benchmark's managers: shown on the leaderboard, never ranked")
    submit.add_argument("--phase", help="the benchmark's phase to submit to (default: the one open now)")
    submit.add_argument("--wait", action="store_true",
                        help="follow the run until it ends (riding out API restarts) and print its metrics; "
                             "exit status 1 when it did not succeed")
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
    board.add_argument("--at", help="the board as it stood at this ISO 8601 time (UTC)")
    board.add_argument("--phase", help="a phase's board (default: the current phase's)")
    board.add_argument("--limit", type=int, help="entries to print (the server's default: 100, at most 1000)")
    board.add_argument("--offset", type=int, default=0, help="entries to skip (ranks are the whole board's)")
    board.set_defaults(func=cmd_leaderboard)

    phases = subparsers.add_parser("phases", help="a benchmark's phases; move one on to the next").add_subparsers(
        dest="phases_command", metavar="ACTION")
    phase_list = phases.add_parser("list", parents=[common], help="the phases in order and the current one")
    phase_list.add_argument("benchmark")
    phase_list.set_defaults(func=cmd_phases_list)
    migrate = phases.add_parser("migrate", parents=[common],
                                help="re-evaluate each participant's selected (else best) runs on the next phase")
    migrate.add_argument("benchmark")
    migrate.add_argument("phase")
    migrate.set_defaults(func=cmd_phases_migrate)


def client_for(args: argparse.Namespace, config: Config) -> ApiClient:
    from evaluator import login
    from evaluator.client import ApiClient

    target = login.target(config, getattr(args, "api_url", None), getattr(args, "token", None))
    return ApiClient(target.api_url, target.token)


def print_reply(args: argparse.Namespace, value: object, render: Callable[[dict], str]) -> None:
    """Print a server reply as JSON, or as the text `render` makes of its escaped copy.

    Every string the server sent reaches `render` scrubbed (single-line, control characters
    shown as escapes), so no field can move the cursor, retitle the terminal or forge a line.
    """
    if args.json:
        print(json_text(value))
    else:
        print(printable(render(scrub(value)), multiline=True))


_print = print_reply


def cmd_login(args: argparse.Namespace, config: Config) -> int:
    from evaluator import login

    token = (args.token or _read_token()).strip()
    if not token:
        raise ValidationFailed("no token given (--token, or on stdin)", field="token")
    target = login.target(config, args.api_url, token)
    from evaluator.client import ApiClient

    ApiClient(target.api_url, token).get("/v1/runs", limit=1)  # 401 (exit 2) before anything is saved
    path = login.save(config, target.api_url, token)
    print(printable(f"logged in to {target.api_url}; the token is saved in {path} (mode 600)"))
    return 0


def _read_token() -> str:
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("API token: ")
    return sys.stdin.readline(4096)


def cmd_logout(args: argparse.Namespace, config: Config) -> int:
    from evaluator import login

    print("logged out" if login.forget(config) else "no saved login")
    return 0


def submission_kind(path: Path) -> str:
    """Tell a bundle from a predictions file by its name, and check its first bytes agree.

    Raises:
        ValidationFailed: the name is neither, or the content is not what the name says.
    """
    from evaluator.storage import layout

    found = layout.submission_extension(path.name)
    if found is None:
        raise ValidationFailed(f"{path.name} is neither a model bundle (.tar.gz, .tgz, .zip) nor a predictions file "
                               "(.csv, .parquet); rename it to what it is")
    kind, ext = found
    with path.open("rb") as handle:
        head = handle.read(4)
    if ext == ".parquet" and head != b"PAR1":
        raise ValidationFailed(f"{path.name} is named .parquet but is not a Parquet file (no PAR1 magic bytes)")
    if ext == ".csv" and (head == b"PAR1" or head[:2] == b"\x1f\x8b" or head[:2] == b"PK"):
        raise ValidationFailed(f"{path.name} is named .csv but is a binary file (Parquet, gzip or zip); "
                               "rename it to what it is, or write the predictions as CSV text")
    return kind


def cmd_submit(args: argparse.Namespace, config: Config) -> int:
    if not args.bundle.is_file():
        raise ValidationFailed(f"file {args.bundle} does not exist")
    submission_kind(args.bundle)  # NOTE: the API decides by the name too; this catches a misnamed file early
    from evaluator.progress import StatusLine, upload_bar

    client = client_for(args, config)
    name = args.name or args.bundle.name.split(".")[0]
    submission = client.submit(args.benchmark, args.bundle, name=name, version=args.version,
                               progress=None if args.json else upload_bar(),
                               multipart_threshold=config.multipart_threshold_bytes, baseline=args.baseline,
                               phase=args.phase)
    if not args.wait:
        _print(args, submission, lambda s: f"submitted {s['id']} ({s['key']})")
        return 0
    status = None if args.json else StatusLine()
    try:
        run = client.wait_for_run(submission["id"], on_status=status)
    finally:
        if status is not None:
            status.close()
    _print(args, run, format_run)
    return 0 if run["status"] == "succeeded" else 1


def format_run(run: dict) -> str:
    """Return a run as text; every server-provided field is escaped (see evaluator.terminal)."""
    run = scrub(run)
    lines = [f"run {run['id']}  {run['benchmark']}  {run['owner']}  {run['status']}"]
    if run.get("failure"):
        lines.append(f"  failure: {run['failure']['code']}: {run['failure']['message']}")
    document = run.get("metrics") or {}
    for name, value in sorted((document.get("metrics") or {}).items()):
        lines.append(f"  {name:<22} {value:.6f}" if isinstance(value, float) else f"  {name:<22} {value}")
    for name, reason in sorted((document.get("skipped") or {}).items()):
        lines.append(f"  {name:<22} skipped: {reason}")
    for warning in document.get("warnings") or []:
        lines.append(f"  warning: {warning}")
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
    when = (f"  frozen at {board['at']}" if board.get("frozen") else f"  as of {board['at']}" if board.get("at")
            else "")
    phase = f"  phase {board['phase']}" if board.get("phase") else ""
    lines = [f"leaderboard {board['benchmark']}{phase}  ({rules['metric']}, {rules['direction']}){when}",
             f"{'rank':>4}  {'participant':<16} {'score':>10}  95% CI"]
    for entry in board["entries"]:
        ci = entry.get("ci") or {}
        interval = f"[{ci['low']:.4f}, {ci['high']:.4f}]" if ci.get("low") is not None else "-"
        rank = "base" if entry.get("rank") is None else entry["rank"]  # a baseline: a reference line, no rank
        who = f"{entry['participant']} ({entry.get('name')})" if entry.get("baseline") else entry["participant"]
        lines.append(f"{rank:>4}  {who:<16} {entry['score']:>10.6f}  {interval}")
    if not board["entries"]:
        lines.append("   (no succeeded runs yet)" if not board.get("total") else "   (no entries on this page)")
    elif board.get("total", 0) > len(board["entries"]):
        first = board.get("offset", 0) + 1
        lines.append(f"   entries {first}-{first + len(board['entries']) - 1} of {board['total']} "
                     f"(--offset, --limit for others)")
    return "\n".join(lines)


def cmd_leaderboard(args: argparse.Namespace, config: Config) -> int:
    params = {"at": args.at} if args.at else {}
    if args.phase:
        params["phase"] = args.phase
    if args.limit is not None:
        params["limit"] = args.limit
    if args.offset:
        params["offset"] = args.offset
    board = client_for(args, config).get(f"/v1/benchmarks/{args.benchmark}/leaderboard", **params)
    _print(args, board, format_leaderboard)
    return 0


def format_phases(listing: dict) -> str:
    """Return a benchmark's phases as text, the current one marked; every server field is escaped."""
    listing = scrub(listing)
    lines = []
    for phase in listing["items"]:
        mark = "*" if phase["slug"] == listing.get("current") else " "
        window = f"{phase['opens_at'] or '-'} .. {phase['closes_at'] or '-'}"
        lines.append(f"{mark} {phase['slug']:<12} {phase['dataset']:<20} {phase['task']:<14} "
                     f"{phase['primary_metric']:<16} {window}")
    return "\n".join(lines) or "(no phases: one implicit phase)"


def cmd_phases_list(args: argparse.Namespace, config: Config) -> int:
    _print(args, client_for(args, config).get(f"/v1/benchmarks/{args.benchmark}/phases"), format_phases)
    return 0


def cmd_phases_migrate(args: argparse.Namespace, config: Config) -> int:
    moved = client_for(args, config).post(f"/v1/benchmarks/{args.benchmark}/phases/{args.phase}/migrate")
    _print(args, moved, format_migrated)
    return 0


def format_migrated(moved: dict) -> str:
    moved = scrub(moved)
    return (f"{moved['from']} -> {moved['to']}: {len(moved['created'])} run(s) queued, "
            f"{len(moved['existing'])} moved before, {len(moved['skipped'])} skipped")
