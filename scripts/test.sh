#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine: installs the tools the tests need (into
# .venv-test, from PyPI), starts the local S3/DynamoDB server, then checks formatting, lints and runs
# every test. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "test tools (moto, cfn-lint) in .venv-test"
scripts/install-test-tools.sh

step "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "template"
.venv-test/bin/cfn-lint template.yaml

if [ -x scripts/start-moto.sh ]; then
  step "local S3 + DynamoDB server (moto)"
  eval "$(scripts/start-moto.sh)"
  trap 'scripts/stop-moto.sh >/dev/null 2>&1 || true' EXIT
fi

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
