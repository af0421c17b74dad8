#!/usr/bin/env bash
# Builds the smray image from a host-built wheelhouse (no package index needed inside the build).
set -euo pipefail
cd "$(dirname "$0")"

usage() {
  cat <<'EOF'
usage: ./build.sh [options]

Builds the wheelhouse (once per lock file) and the smray image, tags it smray:<version>, smray:latest and
smray:<git revision>, and prints the image reference on the last line of standard output.

options:
  --gpu                 build the GPU variant (CUDA xgboost); tags get a -gpu suffix
  --name NAME           image repository name (default: smray)
  --base-image IMAGE    base image (default: the Dockerfile's, debian:bookworm-slim)
  --push REGISTRY       also push to REGISTRY (e.g. 127.0.0.1:5000 or 123456789012.dkr.ecr.eu-west-1.amazonaws.com)
                        and print the pushed reference by digest
  --ecr                 push to the AWS account's ECR repository named NAME, creating it if missing,
                        after logging in with boto3's credentials (region: AWS_REGION/AWS_DEFAULT_REGION)
  --refresh-wheels      download the wheelhouse again even if the lock file did not change
  -h, --help            show this help

environment:
  PYTHON                the Python used for pip download and --ecr (default: .venv/bin/python, else python3)
EOF
}

variant=cpu name=smray base_image="" push="" ecr=false refresh=false
while (($#)); do
  case "$1" in
    --gpu) variant=gpu ;;
    --name) name=${2:?--name needs a value}; shift ;;
    --base-image) base_image=${2:?--base-image needs a value}; shift ;;
    --push) push=${2:?--push needs a registry}; shift ;;
    --ecr) ecr=true ;;
    --refresh-wheels) refresh=true ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -n "$push" && "$ecr" == true ]]; then echo "build.sh: --push and --ecr exclude each other" >&2; exit 2; fi

PYTHON=${PYTHON:-}
[[ -n "$PYTHON" ]] || { [[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python || PYTHON=python3; }
log() { printf '[build] %s\n' "$*" >&2; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || revision="${revision}-dirty"
suffix=""; [[ "$variant" == gpu ]] && suffix="-gpu"
lock=requirements/image-$variant.lock
wheelhouse=build/wheelhouse/$variant

# 1. Wheelhouse: every locked wheel for the image's platform (Linux x86_64, CPython 3.11), reused while
#    the lock file is unchanged.
stamp="$wheelhouse/.lock-sha256"
lock_sum=$(sha256sum "$lock" | cut -d' ' -f1)
if [[ "$refresh" == true || ! -f "$stamp" || "$(cat "$stamp")" != "$lock_sum" ]]; then
  log "filling $wheelhouse from $lock"
  rm -rf "$wheelhouse"; mkdir -p "$wheelhouse"
  "$PYTHON" -m pip download -q --no-deps --require-hashes --only-binary=:all: --implementation cp \
    --python-version 3.11 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$wheelhouse" -r "$lock" 2> >(grep -v "^WARNING: Location .file://" >&2)
  echo "$lock_sum" > "$stamp"
else
  log "reusing $wheelhouse ($(find "$wheelhouse" -name '*.whl' | wc -l) wheels)"
fi

# 2. The project's own wheel (no dependencies: those come from the lock).
rm -rf build/dist; mkdir -p build/dist
"$PYTHON" -m pip wheel -q --no-deps -w build/dist . >/dev/null

# 3. The image. Only the lock, the wheelhouse and the project wheel are sent as context (.dockerignore).
tags=("$name:$version$suffix" "$name:latest$suffix" "$name:$revision$suffix")
build_args=(--build-arg "VARIANT=$variant" --build-arg "VERSION=$version" --build-arg "REVISION=$revision")
[[ -n "$base_image" ]] && build_args+=(--build-arg "BASE_IMAGE=$base_image")
tag_args=(); for t in "${tags[@]}"; do tag_args+=(-t "$t"); done
log "building ${tags[*]}"
docker build -q -f docker/Dockerfile "${build_args[@]}" "${tag_args[@]}" . >/dev/null
ref="$name:$version$suffix"
log "built $ref ($(docker image inspect -f '{{.Size}}' "$ref" | awk '{printf "%.0f MB", $1/1e6}'))"

# 4. Push.
if [[ "$ecr" == true ]]; then
  push=$("$PYTHON" -m smray.workstation.ecr --repository "$name")  # creates the repository, logs docker in
fi
if [[ -n "$push" ]]; then
  remote="$push/$name:$version$suffix"
  docker tag "$ref" "$remote"
  log "pushing $remote"
  docker push -q "$remote" >/dev/null 2>&1 || docker push "$remote" >&2
  ref=$(docker image inspect -f '{{join .RepoDigests "\n"}}' "$ref" | grep -F "$push/$name@" | head -n1)
fi
echo "$ref"
