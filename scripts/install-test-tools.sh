#!/usr/bin/env bash
# Installs the Python-packaged tools the tests use into .venv-test (idempotent, pinned versions).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-test
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
want=(
  "moto[server]==5.1.22" # 5.2.x answers ListParts with an XML root the Rust SDK cannot decode
  "cfn-lint==1.*"
  "schemathesis==4.*"
  "cargo-lambda==1.9.2" # builds the functions for Lambda (arm64, linked with zig)
  "ziglang==0.17.0"
)
# One `pip show` per package: shown several at once, it succeeds when any one of them is there (a venv
# that scripts/start-moto.sh made has moto only).
missing=0
for pkg in moto cfn-lint schemathesis cargo-lambda ziglang; do
  "$VENV/bin/python" -m pip show "$pkg" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 1 ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${want[@]}"
fi

# The SAM CLI (`sam build` as the README runs it, scripts/sam-build.sh) in a venv of its own inside
# .venv-test: it needs cfn-lint>=1.52 and aws-sam-translator 1.115, moto[server] 5.1.22 cfn-lint<=1.41
# and aws-sam-translator<=1.103, so pip cannot put both in one environment. It builds with the
# cargo-lambda and ziglang above (found on PATH), so it needs neither of its own nor Docker.
SAM_VENV="$VENV/sam"
sam_version="1.170.0"
if ! "$SAM_VENV/bin/sam" --version 2>/dev/null | grep -qx "SAM CLI, version $sam_version"; then
  [ -x "$SAM_VENV/bin/python" ] || python3 -m venv "$SAM_VENV"
  "$SAM_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "aws-sam-cli==$sam_version"
fi

# The functions run on arm64 (template.yaml): the standard library for that target.
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

# The browser tests (scripts/browser-tests.sh) drive Debian's Chromium; playwright-core comes from npm
# there. The package index is refreshed once, and only when Chromium is missing.
if [ ! -x /usr/bin/chromium ]; then
  sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
