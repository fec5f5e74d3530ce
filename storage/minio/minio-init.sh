#!/bin/sh
# Create the buckets and subscribe the bundle and dataset prefixes to the API's webhook (re-runnable:
# `mb -p` and `event add -p` ignore what exists). One bucket with three prefixes is the default.
set -eu
DATASETS_BUCKET=${DATASETS_BUCKET:-${BUCKET:-evaluator}}
BUNDLES_BUCKET=${BUNDLES_BUCKET:-${BUCKET:-evaluator}}
RESULTS_BUCKET=${RESULTS_BUCKET:-${BUCKET:-evaluator}}
ARN=arn:minio:sqs::EVALUATOR:webhook

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
for bucket in "$DATASETS_BUCKET" "$BUNDLES_BUCKET" "$RESULTS_BUCKET"; do
  mc mb -p "local/$bucket"
done
mc event add -p "local/$BUNDLES_BUCKET" "$ARN" --event put --prefix bundles/
mc event add -p "local/$DATASETS_BUCKET" "$ARN" --event put --prefix datasets/
# The web pages' browser uploads: per-bucket CORS rules where the server has them (AIStor, S3); the community
# edition answers NotImplemented and uses MINIO_API_CORS_ALLOW_ORIGIN (docker-compose.yml) instead.
WEB_ORIGINS=${WEB_ORIGINS:-http://localhost:8000}
rules=""
for origin in $(echo "$WEB_ORIGINS" | tr ',' ' '); do rules="$rules<AllowedOrigin>$origin</AllowedOrigin>"; done
printf '<CORSConfiguration><CORSRule>%s<AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod><AllowedMethod>POST</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule></CORSConfiguration>' "$rules" \
  | mc cors set "local/$BUNDLES_BUCKET" - \
  || echo "per-bucket CORS not supported here: the global MINIO_API_CORS_ALLOW_ORIGIN ($WEB_ORIGINS) applies"
mc event list "local/$BUNDLES_BUCKET"
[ "$DATASETS_BUCKET" = "$BUNDLES_BUCKET" ] || mc event list "local/$DATASETS_BUCKET"
