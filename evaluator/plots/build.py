"""Build a run's plots (SVG and the JSON points each is drawn from) and store them beside metrics.json.

Two variants, from the summaries scoring handed back (evaluator.plots.stats):
- participant (`plots/<name>.svg`): the part of the labels the participant is scored on (the public part
  when the labels are split), curves and histograms from bins of >= k rows (evaluator.plots.binning);
- exact (`plots/exact/<name>.svg`, managers): every row, at the summaries' full resolution.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from evaluator.plots import EXACT, PARTICIPANT, binning, render
from evaluator.plots.stats import RegressionStats, ScoreHistogram, merge_parts
from evaluator.storage import layout
from evaluator.storage.blobs import BlobStore

logger = logging.getLogger(__name__)

MAX_CURVE_CLASSES = 8  # one-vs-rest curves drawn for a multiclass run (the labels' first classes)


@dataclasses.dataclass(frozen=True)
class Plot:
    name: str
    title: str
    svg: bytes
    data: dict  # the points drawn, as stored in <name>.json


def build(data: dict, *, variant: str, k: int | None) -> list[Plot]:
    """Plots of one variant from one summary (k None: exact)."""
    if data["task"] == "classification":
        return _classification(data, variant, k)
    return _regression(data, variant, k)


def _plot(name: str, title: str, figure, data: dict) -> Plot:  # type: ignore[no-untyped-def]
    return Plot(name, title, render.to_svg(figure, name, title), {"name": name, "title": title, **data})


def _classification(data: dict, variant: str, k: int | None) -> list[Plot]:
    common = {"variant": variant, "n_rows": data["n_rows"], "min_bin_rows": k}
    classes = [str(c) for c in data["classes"]]
    confusion = data["confusion"]
    plots = [_plot("confusion_matrix", "Confusion matrix", render.confusion_figure(
        classes, confusion["matrix"], confusion["other"], "Confusion matrix"),
        {**common, "classes": classes, "matrix": confusion["matrix"], "other": confusion["other"]})]
    wanted = [data["positive"]] if data.get("positive") is not None else classes[:MAX_CURVE_CLASSES]
    histograms = {name: ScoreHistogram.from_dict(data["histograms"][name]) for name in wanted
                  if name in data["histograms"]}
    if not histograms:  # no probability columns for the labels' classes: a confusion matrix only
        return plots
    per_class = {name: binning.score_bins(h, k) for name, h in histograms.items()}
    versus = "" if data.get("positive") is not None else " vs rest"

    def curves(points) -> list[dict]:  # type: ignore[no-untyped-def]
        return [{"class": name, "bins": [b.to_dict() for b in bins], "points": points(bins)}
                for name, bins in per_class.items()]

    def legend(name: str) -> str:
        return f"class {render.clean_text(name)}{versus}"

    roc = curves(binning.roc_points)
    plots.append(_plot("roc", "ROC curve", render.curves_figure(
        [(legend(c["class"]), c["points"]) for c in roc], title="ROC curve", xlabel="false positive rate",
        ylabel="true positive rate", diagonal=True), {**common, "curves": roc}))
    pr = curves(binning.pr_points)
    plots.append(_plot("precision_recall", "Precision-recall curve", render.curves_figure(
        [(legend(c["class"]), c["points"]) for c in pr], title="Precision-recall curve", xlabel="recall",
        ylabel="precision"), {**common, "curves": pr}))
    if k is None:  # NOTE: a bin per row says 0 or 1; the managers' calibration uses 20 equal-width bins
        per_class = {name: binning.uniform_bins(h) for name, h in histograms.items()}
    calibration = curves(binning.calibration_points)
    plots.append(_plot("calibration", "Calibration curve", render.curves_figure(
        [(legend(c["class"]), [(x, y) for x, y, _ in c["points"]]) for c in calibration], title="Calibration curve",
        xlabel="mean predicted probability", ylabel="fraction positive", diagonal=True, markers=True),
        {**common, "curves": calibration}))
    return plots


def _regression(data: dict, variant: str, k: int | None) -> list[Plot]:
    common = {"variant": variant, "n_rows": data["n_rows"], "min_bin_rows": k}
    stats = RegressionStats.from_dict(data["stats"])
    grid = binning.prediction_grid(stats, k)
    residuals = binning.residual_bins(stats, k)
    edges = [b.low for b in residuals] + ([residuals[-1].high] if residuals else [])
    return [
        _plot("predicted_vs_actual", "Predicted vs actual", render.grid_figure(
            grid.x_edges, grid.y_edges, grid.counts, title="Predicted vs actual"), {**common, **grid.to_dict()}),
        _plot("residuals", "Residuals (actual - predicted)", render.histogram_figure(
            edges, [b.rows for b in residuals], title="Residuals", xlabel="actual - predicted"),
            {**common, "bins": [dataclasses.asdict(b) for b in residuals]}),
    ]


def variants(parts: dict, min_bin_rows_floor: int) -> dict[str, list[Plot]]:
    """Both variants from the scoring's parts: {"all": ...} or {"public": ..., "private": ...}."""
    seen = parts.get("all") or parts["public"]
    whole = parts.get("all") or merge_parts(parts["public"], parts["private"])
    k = binning.min_bin_rows(seen["n_rows"], min_bin_rows_floor)
    return {PARTICIPANT: build(seen, variant=PARTICIPANT, k=k), EXACT: build(whole, variant=EXACT, k=None)}


def publish_plots(blobs: BlobStore, bucket: str, prefix: str, parts: dict | None, *, min_bin_rows_floor: int) -> int:
    """Render and store both variants under <prefix>plots/; returns how many SVGs were written.

    Plots are a view of the results: one that cannot be drawn is logged and left out, never a failed run.
    """
    if not parts:
        return 0
    try:
        built = variants(parts, min_bin_rows_floor)
    except Exception:  # NOTE: the loop boundary of an optional artifact; the metrics are already stored
        logger.exception("The plots of %s could not be drawn; the run keeps its metrics without plots", prefix)
        built = {PARTICIPANT: [], EXACT: []}  # empty indexes: the plots are no longer pending
    written = 0
    for variant, plots in built.items():
        exact = variant == EXACT
        for plot in plots:
            blobs.put_bytes(bucket, layout.plot_key(prefix, plot.name, "svg", exact=exact), plot.svg,
                            "image/svg+xml")
            blobs.put_bytes(bucket, layout.plot_key(prefix, plot.name, "json", exact=exact),
                            json.dumps(plot.data, allow_nan=False).encode(), "application/json")
            written += 1
        index = {"variant": variant, "min_bin_rows": plots[0].data["min_bin_rows"] if plots else None,
                 "plots": [{"name": p.name, "title": p.title} for p in plots]}
        blobs.put_json(bucket, layout.plot_key(prefix, "index", "json", exact=exact), index)
    return written
