#!/usr/bin/env bash
# Bounded property-based fuzzing of the API with schemathesis against docs/openapi.yaml: starts
# media-local on a scratch data directory and checks that no request gets a 5xx and every response
# matches the document. FUZZ_SEED fixes the run (CI uses a fixed one; set another to explore),
# FUZZ_EXAMPLES bounds it.
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${FUZZ_SEED:-20261121}"
examples="${FUZZ_EXAMPLES:-40}"

cargo build --quiet -p media-local --bin media-local
data="$(mktemp -d)"
port="$(.venv-test/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
secret="fuzz-secret-$RANDOM"
# Server-side fetching is off: generated URLs must never make the server resolve or contact hosts
# off this machine (url media and images from URLs then answer 400, which the document allows).
MEDIA_FETCH_ENABLED=0 MEDIA_DATA_DIR="$data" MEDIA_LISTEN="127.0.0.1:$port" MEDIA_JWT_SECRET="$secret" target/debug/media-local >"$data/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$data"' EXIT
# Wait until the server answers at all (any HTTP status).
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/v2/media/1/")" != 000 ] && break
  sleep 0.1
done
token="$(MEDIA_FUZZ_SECRET="$secret" .venv-test/bin/python - <<'PY'
import base64, hashlib, hmac, json, os, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
head = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b(json.dumps({"sub": "fuzzer", "exp": int(time.time()) + 3600}).encode())
sig = hmac.new(os.environ["MEDIA_FUZZ_SECRET"].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b(sig)}")
PY
)"
.venv-test/bin/st run docs/openapi.yaml --url "http://127.0.0.1:$port" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$examples" --seed "$seed" --no-color
if grep -qi "panicked" "$data/server.log"; then
  echo "the server panicked during fuzzing:" >&2
  grep -i -A5 "panicked" "$data/server.log" >&2
  exit 1
fi
