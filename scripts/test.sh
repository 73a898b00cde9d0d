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

# Tests that need moto are #[ignore]d, so that a plain `cargo test` passes on a machine without it
# (listing them as ignored, with the reason); moto runs here, so they are included. Without moto they
# would fail at once, saying so: #[ignore] means nothing else in this workspace.
run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast --run-ignored all "$@"
  else
    cargo test --no-fail-fast "$@" -- --include-ignored
  fi
}

step "tests: unit, port contracts and adapters on both backends, Lambda events, and the HTTP suite on the embedded backend"
run_tests --workspace

step "fuzzing the API against docs/openapi.yaml (schemathesis)"
scripts/fuzz-api.sh

step "tests: the same HTTP suite on the AWS backend (S3 + DynamoDB through the SDK, against moto)"
MEDIA_TEST_BACKEND=aws run_tests -p media-local

step "tests: the HTTP suite a third time, served by the function binaries behind cargo lambda watch (and events/)"
# Debug builds of every function; the suite starts them itself (local/tests/common/functions.rs).
cargo build --workspace --bins
MEDIA_TEST_BACKEND=lambda run_tests -p media-local

step "browser tests: CORS and the try-it page in headless Chromium, on both backends (scripts/browser-tests.sh)"
scripts/browser-tests.sh

step "packaging: sam build as the README runs it (the release arm64 build of every function), checked"
scripts/sam-build.sh
