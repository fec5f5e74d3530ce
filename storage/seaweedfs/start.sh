#!/bin/sh
# SeaweedFS for docker-compose's `seaweedfs` profile: `weed mini` (master, volume, filer, S3 gateway in one
# process) whose filer posts bucket events to the API's webhook with the shared token, as `evaluator dev` does.
# The S3 admin identity comes from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Runs as the container's
# entrypoint; tests/e2e/test_compose.py runs it on the host with the `weed` binary.
set -eu
: "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}" "${WEBHOOK_URL:?}"
case "${EVALUATOR_EVENTS_TOKEN:-}" in
  ""|change-me*) echo "refusing to start: EVALUATOR_EVENTS_TOKEN is empty or the published placeholder" >&2; exit 1;;
esac
DIR=${SEAWEEDFS_DIR:-/data}
mkdir -p "$DIR/data" "$DIR/conf"
umask 077
# weed reads notification.toml from its working directory.
cat > "$DIR/conf/notification.toml" <<TOML
[notification.webhook]
enabled = true
endpoint = "$WEBHOOK_URL"
bearer_token = "$EVALUATOR_EVENTS_TOKEN"
timeout_seconds = 10
max_retries = 5
backoff_seconds = 1
max_backoff_seconds = 5
TOML
cd "$DIR/conf"
# 64 MiB volumes and an explicit cap: by default every bucket takes 1 GiB volumes, as many as GiB free
# (see evaluator/storage/seaweed.py). Extra arguments (ports, for a host run) are passed through.
exec "${WEED:-weed}" mini -dir="$DIR/data" -ip="${SEAWEEDFS_IP:-$(hostname)}" -ip.bind="${SEAWEEDFS_BIND:-0.0.0.0}" \
  -s3.port="${S3_PORT:-9000}" -s3.port.iceberg=0 -s3.port.lance=0 \
  -master.volumeSizeLimitMB=64 -volume.max=1000 "$@"
