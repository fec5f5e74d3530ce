#!/usr/bin/env bash
# Make this machine ready to run the evaluator: services up, Docker Engine up, virtualenv installed.
# Idempotent; every step checks before it acts. Used by the Makefile (and so by .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_install() {
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

services() {
  if ! answers 5432; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  fi
  if ! answers 6379; then
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
  for _ in $(seq 1 30); do answers 5432 && answers 6379 && return 0; sleep 1; done
  echo "PostgreSQL or Redis did not come up" >&2; return 1
}

docker_engine() {
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
  if docker info >/dev/null 2>&1; then return 0; fi
  if ! command -v dockerd >/dev/null 2>&1; then
    log "installing Docker Engine (docker.io)"
    apt_install docker.io
  fi
  log "starting dockerd (no bridge network: sandboxes run with --network none)"
  setsid nohup dockerd --bridge=none --iptables=false >/var/log/dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  echo "dockerd did not start; see /var/log/dockerd.log" >&2; return 1
}

# Prometheus's promtool (and prometheus itself): tests/e2e/test_compose_services.py checks monitoring/prometheus.yml
# and scrapes a containerised API with it, since the compose stack's own prom/prometheus image needs a registry.
monitoring() {
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && return 0
  log "installing Prometheus (Debian's prometheus: prometheus and promtool)"
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

# gVisor as a second wall: install runsc and register it with Docker as runtime "runsc" (ptrace
# platform: no KVM needed; --network=none: the sandbox gets no network stack at all, beyond Docker's none). Sandboxes use it with EVALUATOR_SANDBOX_RUNTIME=runsc or a benchmark's
# limits.runtime. A running dockerd reloads its runtimes on SIGHUP (containers keep running).
gvisor() {
  command -v runsc >/dev/null 2>&1 || apt_install runsc
  # registered, with today's arguments: nothing to do
  if docker info --format '{{json .Runtimes.runsc}}' 2>/dev/null | grep -q -- '--network=none'; then return 0; fi
  log "registering runsc as a Docker runtime in /etc/docker/daemon.json"
  mkdir -p /etc/docker
  python3 - "$(command -v runsc)" <<'EOF'
import json, pathlib, sys
path = pathlib.Path("/etc/docker/daemon.json")
config = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
config.setdefault("runtimes", {})["runsc"] = {"path": sys.argv[1],
                                              "runtimeArgs": ["--platform=ptrace", "--network=none"]}
path.write_text(json.dumps(config, indent=2) + "\n")
EOF
  if pidof dockerd >/dev/null; then kill -HUP "$(pidof dockerd)"; sleep 2; fi
  docker info --format '{{json .Runtimes}}' | grep -q '"runsc"' || { echo "runsc is not registered" >&2; return 1; }
}

# The web pages' browser tests (tests/e2e/test_web_pages.py): Debian's Chromium driven by Playwright for
# Python (no browser download), and axe-core from npm in a cache folder outside the checkout.
AXE_DIR=${EVALUATOR_AXE_DIR:-/var/cache/evaluator/node}
browser() {
  command -v chromium >/dev/null 2>&1 && [ -x /usr/bin/chromedriver ] || { log "installing Chromium"; apt_install chromium chromium-driver; }
  command -v npm >/dev/null 2>&1 || { log "installing nodejs and npm"; apt_install nodejs npm; }
  if [ ! -f "$AXE_DIR/node_modules/axe-core/axe.min.js" ]; then
    log "installing axe-core into $AXE_DIR"
    mkdir -p "$AXE_DIR"
    (cd "$AXE_DIR" && npm install --no-audit --no-fund --silent axe-core@4)
  fi
}

venv() {
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
  fi
  if ! .venv/bin/python -c "import evaluator, pytest, moto" 2>/dev/null || [ setup.cfg -nt .venv/.installed ]; then
    log "installing the package with test and lint extras"
    .venv/bin/pip install -q -e '.[test,lint]'
    touch .venv/.installed
  fi
}

for step in "$@"; do "$step"; done
