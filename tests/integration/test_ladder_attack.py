"""The boosting attack of Blum & Hardt (2015) against a public split, with settings.ladder off and on.

The attacker submits K random 0/1 vectors, reads the public feedback each submission gets, and submits
the majority vote of those that looked better than chance. Runs are scored by the real scoring function
over a 50/50 public/private split (no sandbox); the feedback and the result come through the API:
- ladder off: each run's public score, as GET /v1/runs/{id} shows it (4 decimals), and the board's best;
- ladder on: the run view withholds it, so the feedback is the attacker's board score (the Ladder's).
"Gains" is measured against what the attack is worth on rows it never saw: the private part.
"""

from __future__ import annotations

import datetime
import math

import numpy as np
import pytest
from scipy import stats

from evaluator import significance
from evaluator.storage.models import utcnow
from tests.integration.board_runs import binary_dataset, scored_run
from tests.integration.helpers import create_benchmark, register_dataset_over_http

pytestmark = pytest.mark.integration

ROWS, ATTEMPTS, SEED = 4000, 200, 7


def attack(api, headers, labels, *, ladder: bool, blobs, config) -> dict:
    """Run the attack as participant alice on benchmark "atk"; return what she was shown and what it is worth."""
    rng = np.random.default_rng(SEED)
    start = utcnow() - datetime.timedelta(hours=1)
    chosen, board_scores = [], []
    for i in range(ATTEMPTS):
        guess = rng.integers(0, 2, ROWS)
        run = scored_run("atk", "alice", labels, guess, blobs=blobs, config=config,
                         finished_at=start + datetime.timedelta(seconds=i))
        view = api.simulate_get(f"/v1/runs/{run.id}", headers=headers).json
        board = api.simulate_get("/v1/benchmarks/atk/leaderboard", headers=headers).json["entries"][0]["score"]
        if ladder:
            assert view["metrics"] is None  # the Ladder's board is the only public feedback
            better = board > (board_scores[-1] if board_scores else 0.5)  # the score moved: this one counts
        else:
            better = view["metrics"]["metrics"]["accuracy"] > 0.5
        board_scores.append(board)
        if better:
            chosen.append(guess)
    vote = (np.mean(chosen, axis=0) > 0.5).astype(np.int64) if chosen else rng.integers(0, 2, ROWS)
    final = scored_run("atk", "alice", labels, vote, blobs=blobs, config=config,
                       finished_at=start + datetime.timedelta(seconds=ATTEMPTS))
    board = api.simulate_get("/v1/benchmarks/atk/leaderboard", headers=headers).json["entries"][0]
    return {"chosen": len(chosen), "before": board_scores[-1], "after": board["score"], "entry": board,
            "public": final.metrics["metrics"]["accuracy"], "private": final.private_metrics["metrics"]["accuracy"],
            "final": final}


def z_above_half(accuracy: float, n: int) -> float:
    return (accuracy - 0.5) / math.sqrt(0.25 / n)


@pytest.fixture
def public_split(api, admin):
    features, labels = binary_dataset(ROWS, seed=11)
    register_dataset_over_http(api, admin, name="coin", features=features, labels=labels)
    return labels


@pytest.mark.parametrize("ladder", [False, True], ids=["ladder-off", "ladder-on"])
def test_the_boosting_attack_gains_without_the_ladder_and_nothing_with_it(
        api, admin, alice, public_split, blobs, config, ladder):
    create_benchmark(api, admin, benchmark_id="atk", dataset="coin:1",
                     settings={"private_fraction": 0.5, "ladder": ladder})
    result = attack(api, alice, public_split, ladder=ladder, blobs=blobs, config=config)
    n_public = round(ROWS / 2)
    print(f"ladder={ladder}: chose {result['chosen']} of {ATTEMPTS}; board {result['before']} -> "
          f"{result['after']}; boosted run public {result['public']:.4f} private {result['private']:.4f}")
    assert z_above_half(result["private"], n_public) < 3  # on unseen rows the attack is worth nothing
    if not ladder:
        # The board shows the boosted run far above chance: an overfit of several standard errors.
        assert result["entry"]["run_id"] == str(result["final"].id)
        assert z_above_half(result["after"], n_public) > 4
        assert result["after"] - result["private"] > 0.04
        return
    # With the Ladder the boosting submission does not move the board, and is not better than the run
    # the board shows (a one-sided paired test on the public rows).
    assert result["chosen"] <= 5
    assert result["after"] == result["before"] and result["entry"]["run_id"] != str(result["final"].id)
    entry = result["entry"]
    assert 1 <= entry["ladder"]["accepted"] <= 5 and entry["ladder"]["decimals"] == 2
    compared = api.simulate_get("/v1/benchmarks/atk/compare", headers=admin, params={
        "a": str(result["final"].id), "b": entry["run_id"], "view": "public"}).json
    a_only, b_only = compared["discordant"]["a_only"], compared["discordant"]["b_only"]
    one_sided = float(stats.binom.sf(a_only - 1, a_only + b_only, 0.5))  # P(boosted wins >= a_only | no gain)
    assert one_sided > 0.05, compared
    assert significance.mcnemar(a_only, b_only)[1] == pytest.approx(compared["p_value"])
