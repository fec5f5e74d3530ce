"""`evaluator --help` builds its parser without the heavy libraries (it was 1.4 s with pyarrow and docker)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pyarrow", "numpy", "requests", "urllib3", "peewee", "docker", "boto3", "falcon", "dramatiq", "yaml")


def test_building_the_parser_imports_no_heavy_library():
    probe = ("import sys, evaluator.cli as cli; cli.build_parser(); "
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_sub_command_help_builds_without_them():
    probe = ("import sys, contextlib, io, evaluator.cli as cli\n"
             "for name in ('submit', 'runs', 'datasets', 'benchmarks', 'login', 'tokens', 'db', 'evaluate', 'dev'):\n"
             "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
             "        cli.main([name, '--help'])\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_token_roles_offered_are_the_models_roles():
    from evaluator.commands.tokens import ROLES
    from evaluator.storage.models import Role

    assert ROLES == tuple(role.value for role in Role)
