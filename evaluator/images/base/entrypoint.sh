#!/bin/sh
# Run the predictor, then make sure its exit status and predictions reach the runner on stdout.
#
# The predictor's stdout and stderr both go to the container's stderr: that is the
# sandbox log. The container's stdout carries only the report: the predictor writes
# it itself on fd 3 as soon as it is done ("<status> <length>\n" and exactly that many
# bytes of /output/predictions.parquet, then it removes the file), so the runner need
# not wait for this shell or the container to end. If the predictor died before it could
# (killed, or the model ended the process), this shell reports the old way: "<exit status>\n"
# followed by the raw bytes of /output/predictions.parquet (when it is a regular file).
# The runner takes the first report and ignores what follows it. /output is a size-capped
# tmpfs, so the kernel bounds what the model can write; the runner reads at most that many
# bytes. Nothing here is trusted: the model can only spoil its own run.
/opt/venv/bin/python -I /opt/evaluator/evaluator_predict.py "$@" 3>&1 1>&2
status=$?
printf '%s\n' "$status"
if [ -f /output/predictions.parquet ] && [ ! -L /output/predictions.parquet ]; then
    cat /output/predictions.parquet
fi
exit 0
