#!/bin/sh
# Run the predictor, then hand its exit status and predictions to the runner on stdout.
#
# The predictor's stdout and stderr both go to the container's stderr: that is the
# sandbox log. The container's stdout carries only "<exit status>\n" followed by the
# raw bytes of /output/predictions.parquet (when it is a regular file). /output is a
# size-capped tmpfs, so the kernel bounds what the model can write; the runner reads
# at most that many bytes. Nothing here is trusted: the model can only spoil its own run.
/opt/venv/bin/python -I /opt/evaluator/evaluator_predict.py "$@" 1>&2
status=$?
printf '%s\n' "$status"
if [ -f /output/predictions.parquet ] && [ ! -L /output/predictions.parquet ]; then
    cat /output/predictions.parquet
fi
exit 0
