#!/usr/bin/env bash
# A private S3-compatible server for the tests: moto's server (from PyPI, installed by
# scripts/setup.sh into a virtual environment of its own), listening only on 127.0.0.1 at a free
# port, with one empty bucket. It keeps objects in memory and lives for one test run.
#
#   eval "$(scripts/s3.sh start)"   # exports STARLING_TEST_S3, the AWS_* variables, STARLING_TEST_S3_DIR
#   scripts/s3.sh stop "$STARLING_TEST_S3_DIR"
#
# STARLING_TEST_S3 is s3://BUCKET; the AWS_* variables are how the relay (object_store) reaches
# any S3-compatible service: endpoint, region, credentials, plain HTTP allowed.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
venv="${STARLING_TOOLS_DIR:-$HOME/.cache/starling}/moto-$MOTO_VERSION"

case "${1:-}" in
  install)
    [ -x "$venv/bin/moto_server" ] && exit 0
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "moto[s3]==$MOTO_VERSION" "flask==3.1.3" "flask-cors==6.0.5" >&2
    ;;
  start)
    [ -x "$venv/bin/moto_server" ] || { echo "s3.sh: moto is not installed (run scripts/setup.sh)" >&2; exit 1; }
    dir=$(mktemp -d -t starling-s3.XXXXXX)
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    # Up when it answers; then the bucket (moto takes unsigned requests).
    python3 - "$port" <<'PY' || { cat "$dir/server.log" >&2; kill "$(cat "$dir/pid")" 2>/dev/null; exit 1; }
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/starling-test"
deadline = time.time() + 60
while True:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="PUT"), timeout=5).read()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("s3.sh: the server did not answer within 60 s")
        time.sleep(0.2)
PY
    echo "export STARLING_TEST_S3=s3://starling-test"
    echo "export AWS_ENDPOINT=http://127.0.0.1:$port"
    echo "export AWS_REGION=us-east-1"
    echo "export AWS_ACCESS_KEY_ID=starling-test"
    echo "export AWS_SECRET_ACCESS_KEY=starling-test"
    echo "export AWS_ALLOW_HTTP=true"
    echo "export STARLING_TEST_S3_DIR=$dir"
    ;;
  stop)
    dir=${2:?usage: s3.sh stop DIR}
    [ -f "$dir/pid" ] || exit 0
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: s3.sh install | start | stop DIR" >&2
    exit 2
    ;;
esac
