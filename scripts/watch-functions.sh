#!/usr/bin/env bash
# The real Lambda functions on this machine, at the API's own paths: `cargo lambda watch` with the
# workspace router in Cargo.toml (the template's routes), each function built (debug) on its first
# request and rebuilt when its code changes, on the local S3/DynamoDB server with the bucket and table
# created. There is no API Gateway authorizer here, so the functions verify `Authorization: Bearer`
# tokens themselves with MEDIA_JWT_SECRET and/or the identity provider's keys (MEDIA_JWT_JWKS_URL with
# MEDIA_JWT_ISSUER and MEDIA_JWT_AUDIENCE; see shared/src/lambda.rs). With neither set, media-local's
# development secret is used and a token for user "dev" is printed, so media-local's tokens work here too.
#
#   eval "$(scripts/start-moto.sh)"
#   scripts/watch-functions.sh            # serves MEDIA_LISTEN, default 127.0.0.1:8080
#
# Other settings come from the same MEDIA_* variables as everywhere (README, Configuration); this
# script only sets what the functions cannot run without. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  echo 'no local S3/DynamoDB server: run  eval "$(scripts/start-moto.sh)"  first (or set AWS_ENDPOINT_URL)' >&2
  exit 1
fi
if [ -x .venv-test/bin/cargo-lambda ]; then
  cargo_lambda=.venv-test/bin/cargo-lambda
elif command -v cargo-lambda >/dev/null; then
  cargo_lambda=cargo-lambda
else
  echo "cargo-lambda is not installed: scripts/install-test-tools.sh installs it into .venv-test" >&2
  exit 1
fi

listen="${MEDIA_LISTEN:-127.0.0.1:8080}"
host="${listen%:*}"
port="${listen##*:}"
export MEDIA_BUCKET="${MEDIA_BUCKET:-media}"
export MEDIA_TABLE="${MEDIA_TABLE:-media}"
export MEDIA_CREATE_RESOURCES="${MEDIA_CREATE_RESOURCES:-1}"
export MEDIA_S3_FORCE_PATH_STYLE="${MEDIA_S3_FORCE_PATH_STYLE:-1}"
# On AWS the thumbnail function gets new media from the table's stream; nothing delivers that here.
export MEDIA_THUMBNAILS="${MEDIA_THUMBNAILS:-inline}"

if [ -z "${MEDIA_JWT_SECRET:-}" ] && [ -z "${MEDIA_JWT_JWKS_URL:-}" ]; then
  # As media-local: no development secret next to a real identity provider (it is public).
  # The one definition of the development secret is media-local's.
  MEDIA_JWT_SECRET="$(sed -n 's/^pub const DEV_SECRET: &str = "\(.*\)";$/\1/p' local/src/config.rs)"
  [ -n "$MEDIA_JWT_SECRET" ] || { echo "DEV_SECRET not found in local/src/config.rs" >&2; exit 1; }
  export MEDIA_JWT_SECRET
  token="$(python3 - <<'EOF'
import base64, hashlib, hmac, json, os, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "dev", "exp": int(time.time()) + 30 * 24 * 3600}).encode())
sig = hmac.new(os.environ["MEDIA_JWT_SECRET"].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b64(sig)}")
EOF
)"
  echo "MEDIA_JWT_SECRET is not set: using media-local's development secret. A token for user \"dev\":"
  echo "  export TOKEN=$token"
fi
echo "the functions answer on http://$listen (bucket $MEDIA_BUCKET, table $MEDIA_TABLE on $AWS_ENDPOINT_URL);"
echo "each is compiled on its first request."

exec "$cargo_lambda" lambda watch --invoke-address "$host" --invoke-port "$port"
