"""What the commands read at run time lives inside the package, so an installed wheel has it too."""

from __future__ import annotations

import re
from pathlib import Path

from evaluator.sandbox.build import packaged_images_dir
from evaluator.sandbox.frameworks import IMAGES
from evaluator.storage import migrations

ROOT = Path(__file__).resolve().parents[2]


def test_no_schema_script_or_image_folder_is_left_outside_the_package():
    # A script under the old storage/migrations/ would never run, silently: refuse it here.
    assert not list((ROOT / "storage").glob("migrations/*.py")), "move it to evaluator/storage/migrations/"
    assert not (ROOT / "images").exists(), "the images' build contexts live in evaluator/images/"


def test_migration_scripts_are_found_in_the_package_and_numbered_once():
    assert migrations.MIGRATIONS_DIR == ROOT / "evaluator" / "storage" / "migrations"
    numbers = [re.match(r"\d+", p.name).group() for p in migrations.MIGRATIONS_DIR.glob("[0-9]*.py")]
    assert "0001" in numbers and len(numbers) == len(set(numbers)), sorted(numbers)


def test_every_image_has_its_build_context_in_the_package():
    folder = packaged_images_dir()
    assert folder == ROOT / "evaluator" / "images"
    for name in IMAGES:
        assert (folder / name / "Dockerfile").is_file() and (folder / name / "requirements.txt").is_file(), name
    assert (folder / "base" / "evaluator_predict.py").is_file()
