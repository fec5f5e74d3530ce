"""R1: one importable package, and no module or folder takes a standard-library name."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_package_module_named_like_stdlib():
    for path in (ROOT / "evaluator").rglob("*.py"):
        assert path.stem not in sys.stdlib_module_names or path.stem == "__init__", path
    for path in (ROOT / "evaluator").rglob("__init__.py"):
        assert path.parent.name not in sys.stdlib_module_names, path.parent


def test_no_top_level_folder_or_module_shadows_stdlib():
    for path in ROOT.iterdir():
        if path.name.startswith(".") or path.name in {"tests", "bench"}:
            continue
        if path.is_dir():
            assert not (path / "__init__.py").exists() or path.name == "evaluator", f"{path} must not be a package"
        elif path.suffix == ".py":
            assert path.stem not in sys.stdlib_module_names, path


def test_only_evaluator_is_an_importable_top_level_package():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages <= {"evaluator", "tests"}, packages
