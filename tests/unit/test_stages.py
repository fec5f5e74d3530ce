"""Stage durations of a run from the stamps in its provenance."""

from __future__ import annotations

from evaluator.stages import StageDurations, stage_durations

STAMPS = {"queued_at": "2026-12-02T10:00:00.000Z", "picked_up_at": "2026-12-02T10:00:00.040Z",
          "staged_at": "2026-12-02T10:00:00.100Z", "sandbox_ready_at": "2026-12-02T10:00:00.130Z",
          "predicted_at": "2026-12-02T10:00:00.630Z", "scored_at": "2026-12-02T10:00:00.700Z",
          "published_at": "2026-12-02T10:00:00.750Z"}


def test_every_stage_of_a_finished_run_has_its_seconds_in_pipeline_order():
    durations = stage_durations({"stages": STAMPS})

    assert list(durations.items()) == [("queued", 0.04), ("staging", 0.06), ("sandbox_ready", 0.03),
                                       ("predicting", 0.5), ("scoring", 0.07), ("publishing", 0.05), ("total", 0.75)]


def test_a_run_that_failed_in_the_sandbox_has_no_scoring_nor_publishing():
    stamps = {k: v for k, v in STAMPS.items() if k not in ("scored_at", "published_at")}

    durations = stage_durations({"stages": stamps})

    assert durations.scoring is None and durations.publishing is None
    assert durations.predicting == 0.5 and durations.total == 0.63


def test_a_run_without_stamps_or_with_garbage_has_no_durations():
    assert stage_durations(None) == StageDurations() == stage_durations({"stages": "x"})
    assert stage_durations({"stages": {"queued_at": 5, "picked_up_at": "not a time"}}).to_dict() == {}
