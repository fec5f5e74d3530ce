#!/bin/sh
# Create the bucket and subscribe the bundle and dataset prefixes to the API's webhook (re-runnable).
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb -p "local/$BUCKET"
for prefix in bundles/ datasets/; do
  mc event add -p "local/$BUCKET" arn:minio:sqs::EVALUATOR:webhook --event put --prefix "$prefix"
done
mc event list "local/$BUCKET"
