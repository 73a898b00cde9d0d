#!/usr/bin/env bash
# Stops the moto server started by scripts/start-moto.sh (by its recorded pid only).
set -euo pipefail

state="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv-test/moto"
if [[ -f "$state/pid" ]]; then
    pid="$(cat "$state/pid")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        echo "stopped moto (pid $pid)" >&2
    fi
    rm -f "$state/pid" "$state/port"
fi
