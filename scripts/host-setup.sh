#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu host (as root) to build and test smray: a Docker engine, the Dockerfile's
# base image, a local image registry binary and the project's virtual environment. Idempotent: a second run
# only checks. Each step is skipped when what it provides is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[host-setup] %s\n' "$*" >&2; }

BASE_IMAGE=$(sed -n 's/^ARG BASE_IMAGE=//p' docker/Dockerfile)
VENV=${SMRAY_VENV:-.venv}

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v docker-compose >/dev/null || need_pkgs+=(docker-compose)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v docker-registry >/dev/null || need_pkgs+=(docker-registry)
command -v chromium >/dev/null || need_pkgs+=(chromium)  # renders the run report in tests
[ -x /usr/sbin/nginx ] || need_pkgs+=(nginx)  # the tests run `serve` and `route` (nginx fronts) on the host
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  # No package may start its service here (nginx would take port 80): a policy that says no, for this
  # install only, unless the machine has its own.
  policy=/usr/sbin/policy-rc.d
  own_policy=1
  if [ ! -e "$policy" ]; then own_policy=; printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  [ -n "$own_policy" ] || rm -f "$policy"
fi

# No systemd on these machines: start the engine ourselves and wait until it answers.
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/dockerd.log"; exit 1; }
fi

# The Dockerfile names a public base image. Where the registry cannot be reached, build the same
# Debian release with debootstrap and tag it under that name, so the Dockerfile stays unchanged.
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  if ! docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    log "pull of $BASE_IMAGE failed; bootstrapping it with debootstrap"
    suite=$(sed -n 's/^ARG BASE_IMAGE=debian:\([a-z]*\).*/\1/p' docker/Dockerfile)
    mirror=$(grep -h -m1 -oE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true)
    [ -n "$mirror" ] || mirror=$(grep -h -m1 -oE '^deb +[^ ]+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}')
    rootfs=$(mktemp -d /tmp/smray-rootfs.XXXXXX)
    debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >/tmp/smray-debootstrap.log 2>&1 \
      || { log "debootstrap failed; see /tmp/smray-debootstrap.log"; exit 1; }
    tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
  fi
fi

# The host-side tools (tests, pipeline definitions) come from the locked dev requirements (uv.toml makes uv
# trust the machine's certificate store, as pip does).
if [ ! -x "$VENV/bin/python" ] || ! cmp -s requirements/dev.lock "$VENV/.smray-lock"; then
  log "creating $VENV from requirements/dev.lock"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q uv==0.13.9  # pinned: uv.toml follows its settings
  VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip sync -q --require-hashes requirements/dev.lock
  cp requirements/dev.lock "$VENV/.smray-lock"
fi
# smray itself, every time: its console scripts follow pyproject.toml, which changes without the lock.
VIRTUAL_ENV="$VENV" "$VENV/bin/uv" pip install -q --no-deps -e .
log "ready: engine $(docker version -f '{{.Server.Version}}'), base image $BASE_IMAGE, venv $VENV"
