#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine: installs the tools the tests need (into
# .venv-test, from PyPI), starts the local S3/DynamoDB server, then checks formatting, lints and runs
# every test. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "test tools (moto, cfn-lint, cargo-lambda + zig, sam) in .venv-test"
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

run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "$@"
  else
    cargo test --no-fail-fast "$@"
  fi
}

step "tests: unit, adapters, Lambda events, and the HTTP suite on the embedded backend"
run_tests --workspace

step "fuzzing the API against docs/openapi.yaml (schemathesis)"
scripts/fuzz-api.sh

step "tests: the same HTTP suite on the AWS backend (S3 + DynamoDB through the SDK, against moto)"
MEDIA_TEST_BACKEND=aws run_tests -p media-local

step "packaging: sam build as the README runs it (the release arm64 build of every function), checked"
scripts/sam-build.sh
