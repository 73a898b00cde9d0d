#!/usr/bin/env bash
# Starts moto's S3 + DynamoDB server on loopback for the AWS adapter tests and prints the environment
# the tests need, so that a caller can run:
#
#   eval "$(scripts/start-moto.sh)"
#   cargo test -p media-shared --test aws_adapters -- --include-ignored
#   scripts/stop-moto.sh
#
# moto is installed into .venv-test/ (once) and pinned exactly: moto 5.2.x answers ListParts with XML
# the Rust SDK cannot decode. Everything but the export lines goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-test"
moto_version="5.1.22"
state="$venv/moto"
mkdir -p "$venv"

if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$moto_version')" 2>/dev/null; then
    echo "installing moto[server]==$moto_version into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$moto_version" >&2
fi
mkdir -p "$state"

# How the server is started. moto's server normally adds Access-Control-Allow-Origin for any origin
# to every answer (flask-cors), which real S3 never does: without it, only the bucket's own CORS rule
# answers, so the browser tests see S3's behaviour. Recorded to restart servers started otherwise.
flags="MOTO_DISABLE_GLOBAL_CORS=1"
if [[ -f "$state/pid" && "$(cat "$state/flags" 2>/dev/null)" != "$flags" ]]; then
    echo "restarting moto: it was started with other settings" >&2
    "$root/scripts/stop-moto.sh" || true
fi

# A server started earlier by this script and still answering is reused.
if [[ -f "$state/pid" && -f "$state/port" ]] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    port="$(cat "$state/port")"
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null; then
        echo "moto already running on port $port (pid $(cat "$state/pid"))" >&2
    else
        port=""
    fi
else
    port=""
fi

if [[ -z "$port" ]]; then
    port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
    env $flags nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$state/server.log" 2>&1 &
    echo $! >"$state/pid"
    echo "$flags" >"$state/flags"
    echo "$port" >"$state/port"
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null; then
            break
        fi
        if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
            echo "moto_server exited; see $state/server.log" >&2
            cat "$state/server.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    if ! curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null; then
        echo "moto_server did not answer on port $port; see $state/server.log" >&2
        exit 1
    fi
    echo "moto $moto_version running on 127.0.0.1:$port (pid $(cat "$state/pid"))" >&2
fi

cat <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export MEDIA_TEST_AWS=1
ENV
