"""Which of a run's stored plots a caller gets: the participant's k-row bins, or the managers' exact ones.

The plots are stored by evaluator.plots.build beside metrics.json; this reads them for the API and pages,
with the run's own visibility (runs.get_run) and the benchmark's managers (competition.manages).
"""

from __future__ import annotations

import dataclasses

from evaluator import competition, runs
from evaluator.errors import NotFound, ObjectMissing
from evaluator.plots import EXACT, PARTICIPANT
from evaluator.storage import layout
from evaluator.storage.blobs import BlobStore
from evaluator.storage.models import Benchmark, Run, utcnow
from evaluator.tokens import Principal

PENDING = "pending"  # provenance["plots"] of a run whose plots are drawn after it is recorded
PENDING_S = 600.0


@dataclasses.dataclass(frozen=True)
class PlotEntry:
    name: str
    title: str


@dataclasses.dataclass(frozen=True)
class RunPlots:
    run: Run
    variant: str  # participant | exact
    entries: list[PlotEntry]
    min_bin_rows: int | None = None  # the participant variant's k
    pending: bool = False  # recorded, plots not drawn yet (pipeline.draw_plots runs after the status commit)

    @property
    def exact(self) -> bool:
        return self.variant == EXACT


def plots_of(run: Run, principal: Principal | None, *, blobs: BlobStore, bucket: str) -> RunPlots:
    """The plots this caller may see of a run it may see (an empty list while it has none)."""
    exact = competition.manages(Benchmark.get_by_id(run.benchmark_id), principal)
    variant = EXACT if exact else PARTICIPANT
    if not run.results_prefix or competition.ladder_hides(Benchmark.get_by_id(run.benchmark_id), principal):
        return RunPlots(run, variant, [])
    key = layout.plot_key(run.results_prefix, "index", "json", exact=exact)
    if blobs.head(bucket, key) is None:
        return RunPlots(run, variant, [], pending=pending(run))
    index = blobs.get_json(bucket, key)  # NOTE: written by evaluator.plots.build, never by a participant
    items = index.get("plots") or [] if isinstance(index, dict) else []
    entries = [PlotEntry(str(item["name"]), str(item.get("title") or item["name"])) for item in items
               if isinstance(item, dict) and layout.PLOT_NAME.fullmatch(str(item.get("name", "")))]
    k = index.get("min_bin_rows") if isinstance(index, dict) else None
    return RunPlots(run, variant, entries, k if isinstance(k, int) else None)


def pending(run: Run) -> bool:
    """True while a recorded run's plots may still come: its provenance says so, for PENDING_S after it ended.

    Past that (the worker died between the status commit and the plots) the run simply has none.
    """
    if (run.provenance or {}).get("plots") != PENDING or run.finished_at is None:
        return False
    return (utcnow() - run.finished_at).total_seconds() < PENDING_S


def list_plots(run_id: str, principal: Principal, *, blobs: BlobStore, bucket: str) -> RunPlots:
    """The caller's plots of a run (NotFound if the run is not theirs to see)."""
    return plots_of(runs.get_run(run_id, principal), principal, blobs=blobs, bucket=bucket)


def plot_svg(plots: RunPlots, name: str, *, blobs: BlobStore, bucket: str) -> bytes:
    """One plot's SVG, of the caller's variant; NotFound for a name the run has not."""
    if name not in {entry.name for entry in plots.entries}:
        raise NotFound(f"run {plots.run.id} has no plot {name[:40]!r}"
                       + (f"; it has {', '.join(e.name for e in plots.entries)}" if plots.entries else ""))
    try:
        return blobs.get_bytes(bucket, layout.plot_key(str(plots.run.results_prefix), name, "svg",
                                                       exact=plots.exact))
    except ObjectMissing:
        raise NotFound(f"run {plots.run.id}'s plot {name} is gone from the store") from None


def inline_plots(run: Run, principal: Principal | None, *, blobs: BlobStore, bucket: str) -> tuple[RunPlots, list]:
    """The caller's plots with their SVG, for a page that inlines them: (plots, [(entry, svg bytes)])."""
    plots = plots_of(run, principal, blobs=blobs, bucket=bucket)
    drawn = []
    for entry in plots.entries:
        try:
            drawn.append((entry, plot_svg(plots, entry.name, blobs=blobs, bucket=bucket)))
        except NotFound:
            continue
    return plots, drawn
