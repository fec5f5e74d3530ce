"""In-image program: /model + /data/features.parquet -> /output/predictions.parquet.

Long module: it is copied alone into every image and run as a script (no package,
no imports of ours), so loaders, predictors and the warm mode live in this one file.

Runs inside every framework image, as an unprivileged user, with no network, a
read-only root, and only /tmp and /output writable. It is shared by all images
and imports a framework only when the manifest asks for it.

Input
  /model                  the extracted bundle; its manifest is evaluator.yaml,
                          evaluator.yml or evaluator.json:
                            name, version, framework, model (file or folder;
                            optional when `predict` takes one parameter),
                            predict (optional "file.py:function"),
                            classes (optional list: labels of output columns for
                            pytorch/tensorflow/onnx models that emit a score matrix)
  /data/features.parquet  one row per example; the row id column is named by
                          EVALUATOR_ROW_ID_COLUMN (default "row_id"), every other
                          column is a feature, in file order.

Output: /output/predictions.parquet with columns
  row_id                  copied from the features
  prediction              the predicted label or value
  proba__<class>          one per class, when the model gives probabilities

Loading, by framework (the `model` path of the manifest):
  sklearn, xgboost, lightgbm   joblib/pickle file (.joblib, .pkl, .pickle);
                               xgboost .json/.ubj and lightgbm .txt native boosters
  onnx                         .onnx file through onnxruntime (CPU)
  pytorch                      TorchScript (.pt/.pth via torch.jit.load); a pickled
                               nn.Module is tried next
  tensorflow                   .keras/.h5 file or a SavedModel folder

Custom entry point (`predict: predict.py:predict`): the file is imported from
/model and the function is called once per batch:
  predict(batch)            when it takes one parameter, or
  predict(batch, model)     when it takes two; `model` is what the module's own
                            optional `load(model_path: pathlib.Path)` returns, or
                            else what the framework loader above returns.
`batch` is a pandas.DataFrame of the feature columns (row id removed, index 0..n-1).
It returns either a 1-D array-like of n predictions, or a pandas.DataFrame with a
`prediction` column and optional `proba__<class>` columns, or a dict with
`prediction` (n values) and optionally `proba` (n x k) and `classes` (k labels).

Exit status: 0 on success, 2 for a bad manifest or input, 3 when what the model
returned cannot be written as predictions (wrong count, shape or types: the reason is
the log line "[evaluator] invalid predictions: ..."), 1 for any other error (with the
traceback in the log, which is the container's stderr).

Report: when the runner asks for it (EVALUATOR_REPORT=length, set at container create)
and entrypoint.sh gives it the container's stdout as fd 3 (REPORT_FD), the program
writes there itself, as soon as it is done, "<status> <length>\n" and then
exactly <length> bytes of predictions, so the runner has the whole result before the
container has even exited (the exit and removal then happen off the run's critical
path). Its last log line, just before, is "[evaluator] end of log": the log is another pipe,
and the runner waits for both. It then removes /output/predictions.parquet so the entrypoint's own report
(for a program that died before it could write this one) is the bare "<status>\n".
A runner that does not ask gets only the entrypoint's report, "<status>\n" and the file.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import pathlib
import pickle
import shutil
import stat
import sys
import time
import traceback

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

MODEL_DIR = pathlib.Path("/model")
FEATURES = pathlib.Path("/data/features.parquet")
OUTPUT = pathlib.Path("/output/predictions.parquet")
MANIFEST_NAMES = ("evaluator.yaml", "evaluator.yml", "evaluator.json")
MANIFEST_MAX_BYTES = 64 * 1024


class BadInput(Exception):
    """Raised when the manifest or the features cannot be used (exit status 2)."""


class InvalidPredictions(Exception):
    """Raised when what the model returned cannot be written as predictions (exit status 3)."""


def log(message: str) -> None:
    print(f"[evaluator] {message}", file=sys.stderr, flush=True)


def read_manifest(model_dir: pathlib.Path) -> dict:
    for name in MANIFEST_NAMES:
        path = model_dir / name
        if path.is_file():
            raw = path.read_bytes()[: MANIFEST_MAX_BYTES + 1]
            if len(raw) > MANIFEST_MAX_BYTES:
                raise BadInput(f"{name} is larger than {MANIFEST_MAX_BYTES} bytes")
            document = json.loads(raw) if name.endswith(".json") else yaml.safe_load(raw)
            if not isinstance(document, dict):
                raise BadInput(f"{name} is not a mapping")
            return document
    raise BadInput(f"no manifest ({', '.join(MANIFEST_NAMES)}) in {model_dir}")


def inside(model_dir: pathlib.Path, relative: str) -> pathlib.Path:
    path = (model_dir / relative).resolve()
    if path != model_dir.resolve() and model_dir.resolve() not in path.parents:
        raise BadInput(f"{relative!r} points outside the bundle")
    return path


# --- framework loaders: path -> model object -------------------------------------------


def load_pickled(path: pathlib.Path):
    if path.suffix == ".json" or path.suffix == ".ubj":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(path))
        return booster
    if path.suffix == ".txt":
        import lightgbm

        return lightgbm.Booster(model_file=str(path))
    try:
        import joblib

        return joblib.load(path)
    except ImportError:
        with path.open("rb") as handle:
            return pickle.load(handle)  # noqa: S301 - we are the sandbox


def load_onnx(path: pathlib.Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_torch(path: pathlib.Path):
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    try:
        model = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError):
        model = torch.load(str(path), map_location="cpu", weights_only=False)
    if hasattr(model, "eval"):
        model.eval()
    return model


def load_tensorflow(path: pathlib.Path):
    import tensorflow as tf

    if path.is_dir():
        return tf.saved_model.load(str(path))
    return tf.keras.models.load_model(str(path), compile=False)


LOADERS = {
    "sklearn": load_pickled,
    "xgboost": load_pickled,
    "lightgbm": load_pickled,
    "onnx": load_onnx,
    "pytorch": load_torch,
    "tensorflow": load_tensorflow,
}


# --- predictors: (model, batch DataFrame) -> (predictions, proba matrix | None, classes | None)


def scores_to_result(scores, classes):
    scores = np.asarray(scores)
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.ndim == 1:
        return scores, None, None
    if scores.ndim != 2:
        raise ValueError(f"model output has shape {scores.shape}; expected (n,) or (n, k)")
    scores = scores.astype("float64")
    rows_are_probabilities = np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4)
    if not rows_are_probabilities:  # logits: softmax them
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores = shifted / shifted.sum(axis=1, keepdims=True)
    labels = np.asarray(classes) if classes is not None else np.arange(scores.shape[1])
    if len(labels) != scores.shape[1]:
        raise BadInput(f"manifest lists {len(labels)} classes but the model emits {scores.shape[1]} scores")
    return labels[scores.argmax(axis=1)], scores, labels


def predict_estimator(model, batch: pd.DataFrame, classes):
    if type(model).__module__.startswith("xgboost") and type(model).__name__ == "Booster":
        import xgboost

        return scores_to_result(model.predict(xgboost.DMatrix(batch)), classes)
    if type(model).__module__.startswith("lightgbm") and type(model).__name__ == "Booster":
        return scores_to_result(model.predict(batch), classes)
    features = batch if hasattr(model, "feature_names_in_") else batch.to_numpy()
    predictions = np.asarray(model.predict(features))
    proba = model_classes = None
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        proba = np.asarray(model.predict_proba(features), dtype="float64")
        model_classes = np.asarray(model.classes_)
    return predictions, proba, model_classes


def onnx_feed(session, batch: pd.DataFrame) -> dict:
    inputs = session.get_inputs()
    kinds = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}
    if len(inputs) == 1:
        return {inputs[0].name: batch.to_numpy().astype(kinds.get(inputs[0].type, np.float32))}
    return {i.name: batch[i.name].to_numpy().astype(kinds.get(i.type, np.float32)).reshape(-1, 1) for i in inputs}


def predict_onnx(session, batch: pd.DataFrame, classes):
    outputs = session.run(None, onnx_feed(session, batch))
    if len(outputs) == 1:
        return scores_to_result(outputs[0], classes)
    labels, scores = np.asarray(outputs[0]).reshape(-1), outputs[1]
    if isinstance(scores, list) and scores and isinstance(scores[0], dict):  # ZipMap: [{class: p}, ...]
        model_classes = list(scores[0].keys())
        proba = np.array([[row[c] for c in model_classes] for row in scores], dtype="float64")
        return labels, proba, np.asarray(model_classes)
    proba = np.asarray(scores, dtype="float64")
    if proba.ndim == 2 and proba.shape[1] > 1:
        return labels, proba, np.asarray(classes) if classes is not None else np.arange(proba.shape[1])
    return labels, None, None


def predict_torch(model, batch: pd.DataFrame, classes):
    import torch

    with torch.no_grad():
        output = model(torch.from_numpy(batch.to_numpy().astype(np.float32)))
    return scores_to_result(output.detach().cpu().numpy(), classes)


def predict_tensorflow(model, batch: pd.DataFrame, classes):
    features = batch.to_numpy().astype(np.float32)
    if hasattr(model, "predict"):
        output = model.predict(features, verbose=0)
    else:  # a SavedModel: call its serving signature
        signature = model.signatures["serving_default"]
        import tensorflow as tf

        result = signature(tf.constant(features))
        output = next(iter(result.values())).numpy()
    return scores_to_result(output, classes)


PREDICTORS = {
    "sklearn": predict_estimator,
    "xgboost": predict_estimator,
    "lightgbm": predict_estimator,
    "onnx": predict_onnx,
    "pytorch": predict_torch,
    "tensorflow": predict_tensorflow,
}


def custom_predictor(manifest: dict, framework: str, model_path: pathlib.Path):
    """Import the manifest's `predict` entry point; return predictor(batch) -> result."""
    target = str(manifest["predict"])
    file_name, _, function_name = target.partition(":")
    source = inside(MODEL_DIR, file_name)
    if not source.is_file() or not function_name:
        raise BadInput(f"predict entry point {target!r} must be 'file.py:function' inside the bundle")
    sys.path.insert(0, str(MODEL_DIR))
    spec = importlib.util.spec_from_file_location("bundle_predict", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise BadInput(f"{file_name} has no function {function_name!r}")
    if len(inspect.signature(function).parameters) < 2:
        return lambda batch: function(batch)
    loader = getattr(module, "load", None)
    if loader is None and manifest.get("model") is None:
        raise BadInput(f"{function_name}(batch, model) needs a 'model' in the manifest, or a load(model_path) "
                       f"in {file_name}; a predict(batch) of one parameter needs neither")
    model = (loader or LOADERS[framework])(model_path)
    return lambda batch: function(batch, model)


def normalize(result, n_rows: int, classes):
    """Turn what a custom predict returned into (predictions, proba, classes)."""
    if isinstance(result, pd.DataFrame):
        if "prediction" not in result.columns:
            raise ValueError("predict returned a DataFrame without a 'prediction' column")
        proba_columns = [c for c in result.columns if str(c).startswith("proba__")]
        proba = result[proba_columns].to_numpy(dtype="float64") if proba_columns else None
        labels = np.array([str(c)[len("proba__"):] for c in proba_columns]) if proba_columns else None
        return result["prediction"].to_numpy(), proba, labels
    if isinstance(result, dict):
        proba = result.get("proba")
        labels = result.get("classes", classes)
        if proba is not None and labels is None:
            labels = np.arange(np.asarray(proba).shape[1])
        return np.asarray(result["prediction"]), None if proba is None else np.asarray(proba, "float64"), labels
    return np.asarray(result), None, None


def to_table(row_ids, predictions, proba, classes) -> pa.Table:
    n_rows = len(row_ids)
    predictions = np.asarray(predictions).reshape(-1) if np.ndim(predictions) > 1 else np.asarray(predictions)
    if len(predictions) != n_rows:
        raise ValueError(f"the model returned {len(predictions)} predictions for {n_rows} rows")
    columns = {"row_id": pa.array(row_ids), "prediction": pa.array(predictions.tolist())}
    if proba is not None:
        if proba.shape != (n_rows, len(classes)):
            raise ValueError(f"probabilities have shape {proba.shape}; expected ({n_rows}, {len(classes)})")
        for index, label in enumerate(classes):
            label = label.item() if hasattr(label, "item") else label
            columns[f"proba__{label}"] = pa.array(proba[:, index])
    return pa.table(columns)


def run() -> int:
    started = time.monotonic()
    manifest = read_manifest(MODEL_DIR)
    framework = str(manifest.get("framework", ""))
    if framework not in LOADERS:
        raise BadInput(f"framework {framework!r} is not one of {sorted(LOADERS)}")
    if manifest.get("model") is None and not manifest.get("predict"):
        raise BadInput("manifest has no 'model' (only a 'predict' entry point may do without one)")
    # A code-only bundle (no `model`): its own load() gets the bundle folder, a framework loader nothing.
    model_path = MODEL_DIR if manifest.get("model") is None else inside(MODEL_DIR, str(manifest["model"]))
    classes = manifest.get("classes")
    row_id_column = os.environ.get("EVALUATOR_ROW_ID_COLUMN", "row_id")
    batch_size = int(os.environ.get("EVALUATOR_BATCH_SIZE", "10000"))
    log(f"{manifest.get('name')}:{manifest.get('version')} framework={framework} model={manifest.get('model')}")

    if manifest.get("predict"):
        custom = custom_predictor(manifest, framework, model_path)

        def predict(batch):
            result = custom(batch)
            try:
                return normalize(result, len(batch), classes)
            except Exception as ex:  # what the model returned is not a prediction result
                raise InvalidPredictions(str(ex) or type(ex).__name__) from ex
    else:
        model = LOADERS[framework](model_path)
        predictor = PREDICTORS[framework]

        def predict(batch):
            return predictor(model, batch, classes)

    log(f"model loaded in {time.monotonic() - started:.2f}s")
    features = pq.ParquetFile(FEATURES)
    if row_id_column not in features.schema_arrow.names:
        raise BadInput(f"features have no row id column {row_id_column!r}")
    writer = None
    rows = 0
    try:
        for record_batch in features.iter_batches(batch_size=batch_size):
            frame = record_batch.to_pandas()
            row_ids = frame.pop(row_id_column).to_numpy()
            predictions, proba, labels = predict(frame.reset_index(drop=True))
            try:
                table = to_table(row_ids, predictions, proba, labels)
                if writer is None:
                    writer = pq.ParquetWriter(OUTPUT, table.schema)
                writer.write_table(table.cast(writer.schema))
            except (ValueError, TypeError, KeyError, IndexError, pa.ArrowException) as ex:
                raise InvalidPredictions(f"{ex} (rows {rows} to {rows + len(frame) - 1})") from ex
            rows += len(frame)
        if writer is None:  # no rows at all: still write a valid, empty file
            pq.write_table(pa.table({"row_id": pa.array([]), "prediction": pa.array([])}), OUTPUT)
    finally:
        if writer is not None:
            writer.close()
    log(f"wrote {rows} predictions in {time.monotonic() - started:.2f}s")
    return 0


# What `--warm <image>` imports before it waits: what unpickling and predicting a typical model
# of that image loads, so the run's own work starts with the framework in memory.
WARM_IMPORTS = {
    "sklearn": ("joblib", "sklearn.linear_model", "sklearn.ensemble", "sklearn.tree", "sklearn.pipeline",
                "sklearn.preprocessing", "sklearn.neighbors", "sklearn.svm", "xgboost", "lightgbm"),
    "onnx": ("onnxruntime",),
    "pytorch": ("torch",),
    "tensorflow": ("tensorflow",),
}
GO_MAX_BYTES = 4096


def rehearse() -> None:
    """Go once through a run's own code path, on a tiny built-in model and table, all in memory.

    Importing the framework is not all: the first unpickling, the first Parquet read,
    the first to_pandas (pyarrow.pandas_compat), the first predict (scikit-learn's
    validation helpers) and the first ParquetWriter each import or initialise more
    on first use. Done here they cost the waiting container, not the run. Nothing
    is written to disk: /tmp and /output stay as the run will find them.
    """
    import io

    import joblib
    from sklearn.linear_model import LogisticRegression

    x = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.1]])
    sink = io.BytesIO()
    joblib.dump(LogisticRegression().fit(x, [0, 1, 0, 1]), sink)
    model = joblib.load(io.BytesIO(sink.getvalue()))
    table = io.BytesIO()
    pq.write_table(pa.table({"row_id": ["a", "b", "c", "d"], "f0": x[:, 0], "f1": x[:, 1]}), table)
    for record_batch in pq.ParquetFile(io.BytesIO(table.getvalue())).iter_batches(batch_size=10000):
        frame = record_batch.to_pandas()
        row_ids = frame.pop("row_id").to_numpy()
        predictions, proba, labels = predict_estimator(model, frame.reset_index(drop=True), None)
        written = to_table(row_ids, predictions, proba, labels)
        with pq.ParquetWriter(io.BytesIO(), written.schema) as writer:
            writer.write_table(written.cast(writer.schema))


REHEARSALS = {"sklearn": rehearse}


def warm(image: str) -> int:
    """Import the image's framework, rehearse a run, wait for the runner's go line on stdin, then do one run.

    The container holds no tenant data until then: /model and /data are empty
    folders the runner fills just before it writes the line. The line is a JSON
    object of EVALUATOR_* variables for this run (e.g. the row id column).
    """
    for name in WARM_IMPORTS.get(image, ()):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    try:
        REHEARSALS.get(image, lambda: None)()
    except Exception:  # noqa: BLE001 - a warm-up only: the run itself reports whatever is really wrong
        log("warm-up rehearsal failed (the run does its imports itself):")
        traceback.print_exc()
    line = sys.stdin.buffer.readline(GO_MAX_BYTES)
    if not line.strip():
        return 2  # the runner went away before handing over a run
    try:
        variables = json.loads(line)
    except ValueError:
        return 2
    if isinstance(variables, dict):
        os.environ.update({str(k): str(v) for k, v in variables.items() if str(k).startswith("EVALUATOR_")})
    return main()


def main() -> int:
    try:
        return run()
    except BadInput as ex:
        log(f"bad input: {ex}")
        return 2
    except InvalidPredictions as ex:
        log("invalid predictions: " + " ".join(str(ex).split()))  # NOTE: one line: the worker reads it
        return 3
    except Exception:  # the loop boundary of the whole program: report and fail
        traceback.print_exc()
        return 1


REPORT_FD = 3  # the container's stdout, as entrypoint.sh passes it (our own stdout is the log)


def take_report_fd() -> int | None:
    """Take fd 3 (the report channel) away from the numbers the model's code may reuse; None without one.

    None too when the runner did not ask for the report (an older runner reads only the entrypoint's).
    """
    if os.environ.get("EVALUATOR_REPORT") != "length":
        return None
    try:
        fd = os.dup(REPORT_FD)
    except OSError:
        return None  # run without the entrypoint (a test, a shell): the entrypoint's report is the only one
    os.close(REPORT_FD)
    return fd


def report(fd: int | None, status: int) -> None:
    """Write "<status> <length>\n" and the predictions on the report fd, then drop the file (see the docstring).

    Only a regular file is sent (opened without following a symlink), streamed, never read whole:
    it may be as large as the /output tmpfs. If anything fails here, the entrypoint reports the old way.
    """
    if fd is None:
        return
    try:
        with os.fdopen(fd, "wb", closefd=True) as channel:
            try:
                handle = open(os.open(OUTPUT, os.O_RDONLY | os.O_NOFOLLOW), "rb")
            except OSError:  # no file (a failed run), or a symlink: the length is 0
                channel.write(f"{status} 0\n".encode())
                return
            with handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    channel.write(f"{status} 0\n".encode())
                    return
                length = os.fstat(handle.fileno()).st_size
                channel.write(f"{status} {length}\n".encode())
                shutil.copyfileobj(handle, channel, 1024 * 1024)
            OUTPUT.unlink(missing_ok=True)
    except OSError:
        pass


def finish(status: int, fd: int | None = None) -> None:
    """Report, flush what was said and exit now: the interpreter's teardown (module and framework finalizers,
    joblib's and BLAS's thread pools) is hundreds of milliseconds of work for nothing in a container
    that is removed next. The predictions file was closed by run(); the log is flushed here."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if fd is not None:
        try:
            log("end of log")  # NOTE: the runner waits for this line too: the log is another pipe than the report
        except (OSError, ValueError):
            pass
    report(fd, status)
    os._exit(status)


if __name__ == "__main__":
    report_fd = take_report_fd()
    if len(sys.argv) == 3 and sys.argv[1] == "--warm":
        finish(warm(sys.argv[2]), report_fd)
    finish(main(), report_fd)
