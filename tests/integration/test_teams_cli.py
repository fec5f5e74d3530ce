"""`evaluator teams ...` over real HTTP: the app served on loopback, the CLI's main() as a participant runs it."""

from __future__ import annotations

import json
import threading
import wsgiref.simple_server

import pytest

from evaluator import cli
from evaluator.tokens import create_token
from tests.integration.helpers import create_benchmark, register_dataset_over_http

pytestmark = pytest.mark.integration


class QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args) -> None:  # the test reads the CLI's output, not the access log
        pass


@pytest.fixture
def served(api):
    """The API of the `api` fixture (real PostgreSQL and S3) on a loopback port; yields its URL."""
    server = wsgiref.simple_server.make_server("127.0.0.1", 0, api.app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run(capsys, url: str, token: str, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--api-url", url, "--token", token])
    out, err = capsys.readouterr()
    return code, out, err


def test_create_invite_accept_list_and_leave_from_the_cli(api, served, admin, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("EVALUATOR_CLIENT_CONFIG_FILE", str(tmp_path / "none.json"))  # no saved login is read
    register_dataset_over_http(api, admin)
    create_benchmark(api, admin, benchmark_id="league", settings={"teams": True})
    alice, _ = create_token("alice", "participant")
    bob, _ = create_token("bob", "participant")

    code, out, _ = run(capsys, served, alice, "teams", "create", "league", "Gradient Descenders", "--json")
    assert code == 0
    team = json.loads(out)
    assert team["name"] == "Gradient Descenders" and team["size"] == 1
    code, out, _ = run(capsys, served, alice, "teams", "invite", team["id"], "bob")
    assert code == 0 and "bob" in out and "invited by alice" in out

    code, _, err = run(capsys, served, create_token("carol", "participant")[0], "teams", "accept", team["id"])
    assert code == 2 and err.startswith("error: forbidden: only an invited user accepts")
    code, out, _ = run(capsys, served, bob, "teams", "accept", team["id"])
    assert code == 0 and out.startswith(f"team Gradient Descenders ({team['id']}) of league: 2 member(s)")

    code, out, _ = run(capsys, served, bob, "teams", "list", "league")
    assert code == 0 and "alice" in out and "bob" in out and "invited" not in out
    code, out, _ = run(capsys, served, bob, "teams", "leave", team["id"])
    assert (code, out.strip()) == (0, f"left team {team['id']}")
    code, out, _ = run(capsys, served, alice, "teams", "show", team["id"])
    assert code == 0 and "1 member(s)" in out and "bob" not in out
    code, _, err = run(capsys, served, alice, "teams", "remove", team["id"], "bob")
    assert code == 2 and "error: not_found:" in err
