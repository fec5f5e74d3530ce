"""Peak memory and outcome of the trusted scorer on each hostile predictions file.

Usage: python bench/hostile_scoring.py [--cap-gib 4] [--case NAME ...]
Each case is scored in its own process (address space capped at --cap-gib, so the current
code's worst cases end in a MemoryError instead of taking the machine down) through the entry
the worker uses; the line shows the failure code, the message length and the peak RSS of that
process and its children (the scoring subprocess).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.hostile_predictions import CASES  # noqa: E402

ENTRY = """
import json, resource, sys, pathlib
cap = int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
labels, predictions, task = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
outcome = {}
try:
    from evaluator.config import Config
    from evaluator.isolated_scoring import score_isolated
    from evaluator.settings import Scoring
    score_isolated(Scoring(task), labels, predictions, work_dir=predictions.parent, config=Config())
    outcome["code"] = "succeeded"
except BaseException as ex:
    outcome["code"] = getattr(ex, "code", type(ex).__name__)
    outcome["message_chars"] = len(getattr(ex, "message", str(ex)))
    outcome["message"] = getattr(ex, "message", str(ex))[:160]
with open("/proc/self/status") as status:
    own = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
outcome["peak_mib"] = max(own, children) // 1024
outcome["own_peak_mib"], outcome["children_peak_mib"] = own // 1024, children // 1024
print(json.dumps(outcome))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-gib", type=float, default=4.0)
    parser.add_argument("--case", action="append", choices=sorted(CASES))
    args = parser.parse_args()
    cap = int(args.cap_gib * (1 << 30))
    for name in args.case or list(CASES):
        builder, task = CASES[name]
        with tempfile.TemporaryDirectory() as tmp:
            labels, predictions = builder(Path(tmp))
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", ENTRY, str(labels), str(predictions), task, str(cap)],
                                  capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - started
            try:
                outcome = json.loads(done.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                outcome = {"code": f"process died (exit {done.returncode})", "stderr": done.stderr[-300:]}
            outcome.update(case=name, file_kib=predictions.stat().st_size >> 10, seconds=round(seconds, 2))
            print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
