"""Sandbox overhead: our locked-down run vs a bare `docker run` of the same image, same prediction.

For each framework image that is built, with a small bundle (150 rows x 4 features):
  bare      `docker run --rm` of the image with /model and /data bind-mounted, nothing else
  sandbox   DockerSandbox.run (create -> attach -> start -> predictions read -> removed),
            i.e. cold start to first prediction, with every lockdown option
  evaluate  `evaluator evaluate` as a participant runs it (CLI start, extraction, staging,
            sandbox, scoring), sklearn only unless --all
Each is repeated --repeat times (after one warm-up of each); medians and ratios are printed.

Usage: python bench/sandbox_overhead.py [--repeat 5] [--all]
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import docker
import docker.errors
import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression

from evaluator.sandbox.runner import DockerSandbox
from evaluator.sandbox.spec import Limits, SandboxSpec

EVALUATOR = pathlib.Path(sys.executable).with_name("evaluator")
IN_IMAGE_TRAINING = {
    "pytorch": ("model.pt", "import torch\n"
                "torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 3))).save('/work/model.pt')\n"),
    "tensorflow": ("model.keras", "import keras\n"
                   "keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation='softmax')])"
                   ".save('/work/model.keras')\n"),
}


def make_data(folder: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    x = (rng.normal(size=(150, 4)) + y[:, None]).astype(np.float32)
    pq.write_table(pa.table({"row_id": np.arange(150), **{f"f{j}": x[:, j] for j in range(4)}}),
                   folder / "features.parquet")
    pq.write_table(pa.table({"row_id": np.arange(150), "target": y}), folder / "labels.parquet")
    return x, y


def write_model(framework: str, model_dir: pathlib.Path, x, y, client: docker.DockerClient) -> None:
    model = LogisticRegression(max_iter=300).fit(x, y)
    if framework == "sklearn":
        joblib.dump(model, model_dir / "model.joblib")
        name = "model.joblib"
    elif framework == "onnx":
        from skl2onnx import to_onnx

        (model_dir / "model.onnx").write_bytes(to_onnx(model, x[:1]).SerializeToString())
        name = "model.onnx"
    else:
        name, script = IN_IMAGE_TRAINING[framework]
        model_dir.chmod(0o777)
        client.containers.run(f"evaluator-{framework}", ["-c", script], entrypoint="/opt/venv/bin/python",
                              volumes={str(model_dir): {"bind": "/work", "mode": "rw"}}, network_mode="none",
                              remove=True, environment={"HOME": "/tmp"})
        model_dir.chmod(0o755)
    (model_dir / "evaluator.yaml").write_text(f"name: bench\nversion: 1\nframework: {framework}\nmodel: {name}\n")
    for path in model_dir.iterdir():
        path.chmod(0o644)


def bundle_of(model_dir: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    with tarfile.open(dest, "w:gz") as archive:
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)
    return dest


def timed(function, repeat: int) -> list[float]:
    function()  # warm-up: page cache, image layers
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def bare_run(image: str, model_dir: pathlib.Path, data_dir: pathlib.Path) -> None:
    result = subprocess.run(["docker", "run", "--rm", "-v", f"{model_dir}:/model:ro", "-v", f"{data_dir}:/data:ro",
                             "--user", "0", image], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if not result.stdout.startswith(b"0\n"):
        raise SystemExit(f"bare docker run of {image} did not predict: {result.stdout[:200]!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--all", action="store_true", help="also time `evaluator evaluate` for every image")
    args = parser.parse_args()
    client = docker.from_env(timeout=300)
    sandbox = DockerSandbox(client)
    root = pathlib.Path(tempfile.mkdtemp(prefix="evaluator-bench-", dir="/tmp"))
    root.chmod(0o755)
    rows = []
    try:
        data_dir = root / "data"
        data_dir.mkdir(mode=0o755)
        x, y = make_data(data_dir)
        for path in data_dir.iterdir():
            path.chmod(0o644)
        for framework in ("sklearn", "onnx", "pytorch", "tensorflow"):
            image = f"evaluator-{framework}"
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                print(f"{image}: not built, skipped", file=sys.stderr)
                continue
            model_dir = root / framework
            model_dir.mkdir(mode=0o755)
            write_model(framework, model_dir, x, y, client)
            spec = SandboxSpec(image, model_dir, data_dir, Limits(timeout_s=300, memory="2g", cpus=1.0), "bench")

            def sandboxed() -> None:
                result = sandbox.run(spec)
                if result.exit_code != 0 or not result.predictions:
                    raise SystemExit(f"{image} failed in the sandbox:\n{result.log.decode()[-2000:]}")

            bare = statistics.median(timed(lambda: bare_run(image, model_dir, data_dir), args.repeat))
            ours = statistics.median(timed(sandboxed, args.repeat))
            evaluate = None
            if framework == "sklearn" or args.all:
                bundle = bundle_of(model_dir, root / f"{framework}.tar.gz")
                command = [str(EVALUATOR), "evaluate", "--bundle", str(bundle), "--features",
                           str(data_dir / "features.parquet"), "--labels", str(data_dir / "labels.parquet"),
                           "--task", "classification", "--json"]

                def cli() -> None:
                    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)

                evaluate = statistics.median(timed(cli, args.repeat))
            rows.append((framework, bare, ours, evaluate))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nmedian of {args.repeat} runs after a warm-up; 150 rows x 4 features; 1 CPU, 2g for the sandbox\n")
    print(f"{'image':<12} {'bare docker run':>16} {'sandbox run':>12} {'ratio':>6} {'evaluate CLI':>13} {'ratio':>6}")
    for framework, bare, ours, evaluate in rows:
        cli = f"{evaluate:>12.3f}s {evaluate / bare:>6.2f}" if evaluate else f"{'-':>13} {'-':>6}"
        print(f"{framework:<12} {bare:>15.3f}s {ours:>11.3f}s {ours / bare:>6.2f} {cli}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
