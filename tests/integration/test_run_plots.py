"""Plots from the real scoring child to the store, then read by the API and inlined in the run page.

The scoring runs in its child process (isolated_scoring) over Parquet files on disk, with a private
split; publish_plots stores both variants in S3; the API and the page serve them by the caller's role.
"""

from __future__ import annotations

import datetime
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluator import run_plots
from evaluator.competition import is_private_row
from evaluator.isolated_scoring import score_isolated
from evaluator.pipeline import draw_plots
from evaluator.plots.build import publish_plots
from evaluator.settings import Scoring
from evaluator.storage import layout
from evaluator.storage.models import Benchmark, Dataset, Run, Submission, utcnow
from evaluator.tokens import create_token
from tests.integration.test_web_pages import cookie_header, sign_in

pytestmark = pytest.mark.integration

ROWS = 1200
NAMES = ["confusion_matrix", "roc", "precision_recall", "calibration"]


def scored_files(tmp_path):
    rng = np.random.default_rng(7)
    ids = [f"r{i:05d}" for i in range(ROWS)]
    y = rng.integers(0, 2, ROWS)
    s = (np.arange(ROWS) + 0.37) / ROWS  # a unique score per row
    pq.write_table(pa.table({"row_id": ids, "target": y}), tmp_path / "labels.parquet")
    pq.write_table(pa.table({"row_id": ids, "prediction": (s > 0.5).astype(np.int64), "proba__0": 1 - s,
                             "proba__1": s}), tmp_path / "predictions.parquet")
    return ids, y


@pytest.fixture
def scored_run(db, config, blobs, tmp_path):
    """Alice's run of olga's benchmark (30% private), scored in the child process, its plots in S3."""
    ids, y = scored_files(tmp_path)
    dataset = Dataset.create(name="toy", version="1", features_key="f", labels_key="l", status="ready",
                             row_count=ROWS)
    benchmark = Benchmark.create(id="toy-b", title="Toy", dataset=dataset, task="classification",
                                 primary_metric="accuracy", direction="maximize", owner="olga",
                                 visibility="public", settings={"private_fraction": 0.3})
    plot_data: dict = {}
    document, private = score_isolated(Scoring.of(benchmark, dataset), tmp_path / "labels.parquet",
                                       tmp_path / "predictions.parquet", work_dir=tmp_path / "scoring",
                                       config=config, expected_rows=ROWS, plot_data=plot_data)
    submission = Submission.create(benchmark="toy-b", owner="alice", name="m", version="1", bucket="x",
                                   object_key="bundles/toy-b/alice/m/1/x.tar.gz", status="uploaded")
    run = Run.create(submission=submission, benchmark="toy-b", owner="alice", status="succeeded",
                     metrics=document, private_metrics=private)
    prefix = layout.results_prefix("toy-b", run.id)
    Run.update(results_prefix=prefix).where(Run.id == run.id).execute()
    written = publish_plots(blobs, config.results_bucket, prefix, plot_data,
                            min_bin_rows_floor=config.plot_min_bin_rows)
    public = sum(not is_private_row(i, "toy-b", 0.3) for i in ids)
    return {"run": str(run.id), "prefix": prefix, "plot_data": plot_data, "written": written, "public": public,
            "document": document}


def test_the_scoring_child_hands_back_bounded_summaries_of_each_part(scored_run, config, blobs):
    plot_data = scored_run["plot_data"]
    assert set(plot_data) == {"public", "private"}
    assert plot_data["public"]["n_rows"] == scored_run["public"] == scored_run["document"]["n_rows"]
    assert plot_data["public"]["n_rows"] + plot_data["private"]["n_rows"] == ROWS
    assert plot_data["public"]["positive"] == "1" and sorted(plot_data["public"]["histograms"]) == ["0", "1"]
    assert scored_run["written"] == 8  # 4 plots, 2 variants
    roc = blobs.get_json(config.results_bucket, f"{scored_run['prefix']}plots/roc.json")
    assert roc["n_rows"] == scored_run["public"] and roc["min_bin_rows"] == 50
    exact = blobs.get_json(config.results_bucket, f"{scored_run['prefix']}plots/exact/roc.json")
    assert exact["n_rows"] == ROWS and len(exact["curves"][0]["bins"]) == ROWS


def test_the_api_serves_the_callers_variant(api, scored_run, config, blobs):
    run_id, prefix = scored_run["run"], scored_run["prefix"]
    alice = {"Authorization": f"Bearer {create_token('alice', 'participant')[0]}"}
    manager = {"Authorization": f"Bearer {create_token('root', 'admin')[0]}"}
    bob = {"Authorization": f"Bearer {create_token('bob', 'participant')[0]}"}
    listed = api.simulate_get(f"/v1/runs/{run_id}/plots", headers=alice).json
    assert listed["variant"] == "participant" and [p["name"] for p in listed["items"]] == NAMES
    assert listed["items"][1]["url"] == f"/v1/runs/{run_id}/plots/roc"
    svg = api.simulate_get(f"/v1/runs/{run_id}/plots/roc", headers=alice)
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert svg.content == blobs.get_bytes(config.results_bucket, f"{prefix}plots/roc.svg")
    assert api.simulate_get(f"/v1/runs/{run_id}/plots", headers=manager).json["variant"] == "exact"
    assert api.simulate_get(f"/v1/runs/{run_id}/plots/roc", headers=manager).content == \
        blobs.get_bytes(config.results_bucket, f"{prefix}plots/exact/roc.svg")
    assert api.simulate_get(f"/v1/runs/{run_id}/plots", headers=bob).status_code == 404
    missing = api.simulate_get(f"/v1/runs/{run_id}/plots/index", headers=alice)
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    assert api.simulate_get(f"/v1/runs/{run_id}/plots").status_code == 401


def test_the_run_page_inlines_the_callers_plots_as_accessible_figures(api, scored_run, config, blobs):
    run_id, prefix = scored_run["run"], scored_run["prefix"]
    alice = create_token("alice", "participant")[0]
    page = api.simulate_get(f"/runs/{run_id}", headers=cookie_header(sign_in(api, alice)))
    assert page.status_code == 200
    figures = re.findall(r'<figure class="plot" id="plot-(\w+)".*?</figure>', page.text, re.S)
    assert figures == NAMES
    for name in NAMES:
        svg = blobs.get_bytes(config.results_bucket, f"{prefix}plots/{name}.svg").decode()
        assert svg in page.text  # the participant's variant, inline
        assert re.match(r'<svg [^>]*role="img" aria-label="[^"]+"><title>', svg)
    assert re.search(r"<figcaption[^>]*>ROC curve</figcaption>", page.text)
    assert "at least 50 rows" in page.text and " style=" not in page.text.split('id="plots"')[1]
    admin = create_token("root", "admin")[0]
    managed = api.simulate_get(f"/runs/{run_id}", headers=cookie_header(sign_in(api, admin)))
    exact = blobs.get_bytes(config.results_bucket, f"{prefix}plots/exact/roc.svg").decode()
    assert exact in managed.text and "Full resolution" in managed.text


def test_a_regression_run_gets_binned_participant_plots_and_exact_ones(db, config, blobs, tmp_path):
    rng = np.random.default_rng(8)
    ids = [f"r{i:05d}" for i in range(ROWS)]
    y = rng.normal(20, 5, ROWS)
    pq.write_table(pa.table({"row_id": ids, "target": y}), tmp_path / "labels.parquet")
    # a unique prediction per row, far apart: an exact per-row plot would place each row's target
    prediction = np.arange(ROWS) * 1000.0
    pq.write_table(pa.table({"row_id": ids, "prediction": prediction}), tmp_path / "predictions.parquet")
    dataset = Dataset.create(name="reg", version="1", features_key="f", labels_key="l", status="ready",
                             row_count=ROWS)
    benchmark = Benchmark.create(id="reg-b", title="Reg", dataset=dataset, task="regression", primary_metric="mae",
                                 direction="minimize", owner="olga", visibility="public")
    plot_data: dict = {}
    score_isolated(Scoring.of(benchmark, dataset), tmp_path / "labels.parquet", tmp_path / "predictions.parquet",
                   work_dir=tmp_path / "scoring", config=config, expected_rows=ROWS, plot_data=plot_data)
    assert set(plot_data) == {"all"} and plot_data["all"]["task"] == "regression"
    prefix = "results/reg-b/run/"
    assert publish_plots(blobs, config.results_bucket, prefix, plot_data, min_bin_rows_floor=50) == 4
    k = 60  # max(50, 1200 / 20)
    grid = blobs.get_json(config.results_bucket, prefix + "plots/predicted_vs_actual.json")
    assert grid["min_bin_rows"] == k and all(sum(column) >= k for column in grid["counts"])
    assert sum(map(sum, grid["counts"])) == ROWS
    residuals = blobs.get_json(config.results_bucket, prefix + "plots/residuals.json")
    assert all(b["rows"] >= k for b in residuals["bins"])
    exact = blobs.get_json(config.results_bucket, prefix + "plots/exact/predicted_vs_actual.json")
    assert exact["min_bin_rows"] is None and sum(map(sum, exact["counts"])) == ROWS
    svg = blobs.get_bytes(config.results_bucket, prefix + "plots/residuals.svg")
    assert svg.startswith(b"<svg") and len(svg) < 80_000


def test_a_recorded_run_says_plots_pending_until_they_are_drawn(api, db, config, blobs, tmp_path):
    # Given a run recorded with its plots still to draw (pipeline.draw_plots runs after the status commit)
    ids, _ = scored_files(tmp_path)
    dataset = Dataset.create(name="toy", version="1", features_key="f", labels_key="l", status="ready",
                             row_count=ROWS)
    benchmark = Benchmark.create(id="toy-p", title="Toy", dataset=dataset, task="classification",
                                 primary_metric="accuracy", direction="maximize", owner="olga", visibility="public")
    plot_data: dict = {}
    document, _ = score_isolated(Scoring.of(benchmark, dataset), tmp_path / "labels.parquet",
                                 tmp_path / "predictions.parquet", work_dir=tmp_path / "scoring", config=config,
                                 expected_rows=ROWS, plot_data=plot_data)
    submission = Submission.create(benchmark="toy-p", owner="alice", name="m", version="1", bucket="x",
                                   object_key="bundles/toy-p/alice/m/1/x.tar.gz", status="uploaded")
    run = Run.create(submission=submission, benchmark="toy-p", owner="alice", status="succeeded", metrics=document,
                     provenance={"plots": run_plots.PENDING}, finished_at=utcnow())
    prefix = layout.results_prefix("toy-p", run.id)
    Run.update(results_prefix=prefix).where(Run.id == run.id).execute()
    alice = create_token("alice", "participant")[0]
    headers = {"Authorization": f"Bearer {alice}"}
    session = cookie_header(sign_in(api, alice))

    # Then the API and the page say the plots are pending
    listed = api.simulate_get(f"/v1/runs/{run.id}/plots", headers=headers).json
    assert listed["pending"] is True and listed["items"] == []
    assert "Plots pending" in api.simulate_get(f"/runs/{run.id}", headers=session).text

    # When the worker draws them
    draw_plots(blobs, config, prefix, plot_data)

    # Then they are listed and inlined, no longer pending
    listed = api.simulate_get(f"/v1/runs/{run.id}/plots", headers=headers).json
    assert listed["pending"] is False and [p["name"] for p in listed["items"]] == NAMES
    page = api.simulate_get(f"/runs/{run.id}", headers=session).text
    assert "Plots pending" not in page and 'id="plot-roc"' in page

    # And a run whose worker never drew them stops saying pending once PENDING_S has passed
    stale = utcnow() - datetime.timedelta(seconds=run_plots.PENDING_S + 1)
    Run.update(results_prefix="results/toy-p/none/", finished_at=stale).where(Run.id == run.id).execute()
    assert api.simulate_get(f"/v1/runs/{run.id}/plots", headers=headers).json["pending"] is False


def test_plots_interrupted_by_a_graceful_shutdown_are_drawn_again(db, config, blobs, tmp_path, monkeypatch):
    # Given a recorded run's plot data, and a worker stop that interrupts the first figure (notify_shutdown)
    from dramatiq.middleware import Shutdown

    from evaluator.plots import render

    scored_files(tmp_path)
    plot_data: dict = {}
    score_isolated(Scoring("classification"), tmp_path / "labels.parquet", tmp_path / "predictions.parquet",
                   work_dir=tmp_path / "scoring", config=config, expected_rows=ROWS, plot_data=plot_data)
    drawn, calls = render.to_svg, []

    def interrupted_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise Shutdown("Worker is shutting down.")
        return drawn(*args, **kwargs)

    monkeypatch.setattr(render, "to_svg", interrupted_once)

    # When the worker draws them
    draw_plots(blobs, config, "results/toy-s/run/", plot_data)

    # Then they are all there
    index = blobs.get_json(config.results_bucket, "results/toy-s/run/plots/index.json")
    assert [p["name"] for p in index["plots"]] == NAMES
