#!/usr/bin/env bash
# End-to-end tests in headless Chromium (browser-tests/): CORS as a browser enforces it, uploads from a
# web app on another origin as the official client makes them, and the try-it page (progress, reload
# mid-upload, resume, pause, errors), on the embedded backend and on the AWS backend against moto.
# Builds media-local (debug), installs the pinned playwright-core (npm ci), starts moto unless
# AWS_ENDPOINT_URL is set already, and keeps server logs and screenshots in target/browser-tests/.
# MEDIA_BROWSER_BACKENDS=local runs the embedded backend only.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x /usr/bin/chromium ] || scripts/install-test-tools.sh
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' \
  || { echo "browser tests need Node.js 20 or newer (found $(node --version))" >&2; exit 1; }

cargo build -p media-local
(cd browser-tests && npm ci --no-audit --no-fund --loglevel=error)

if [ -z "${AWS_ENDPOINT_URL:-}" ] && [[ "${MEDIA_BROWSER_BACKENDS:-local,aws}" == *aws* ]]; then
  eval "$(scripts/start-moto.sh)"
  trap 'scripts/stop-moto.sh >/dev/null 2>&1 || true' EXIT
fi

mkdir -p target/browser-tests
results=target/browser-tests/results.tap
status=0
(cd browser-tests && node --test --test-concurrency=1 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="../$results" \
  tests/) || status=$?

passed=$(sed -n 's/^# pass //p' "$results")
failed=$(sed -n 's/^# fail //p' "$results")
echo
echo "browser tests (Chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'), backends ${MEDIA_BROWSER_BACKENDS:-local,aws}): ${passed:-0} passed, ${failed:-?} failed; logs and screenshots in target/browser-tests/"
exit $status
