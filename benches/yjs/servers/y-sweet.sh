#!/usr/bin/env bash
#   servers/y-sweet.sh PORT [STORE_DIR]
# Starts y-sweet (Rust, jamsocket) on 127.0.0.1:PORT in the foreground, no auth key, filesystem
# store in STORE_DIR (the runner creates and removes it), else in a fresh mktemp dir that is left
# behind (its path is printed on stderr). exec, so the PID the runner sees is y-sweet's.
# Docs: POST /doc/new {"docId": ROOM}, then ws://127.0.0.1:PORT/d/ROOM/ws/ROOM (y-websocket protocol).
# Binary: $Y_SWEET_BIN, else benches/yjs/.tools/bin/y-sweet (the install command below), else
# `y-sweet` on PATH.
set -euo pipefail
PORT="${1:?usage: $0 PORT [STORE_DIR]}"
TOOLS="$(cd "$(dirname "$0")/.." && pwd)/.tools"
BIN="${Y_SWEET_BIN:-$TOOLS/bin/y-sweet}"
if [ ! -x "$BIN" ]; then
  BIN="$(command -v y-sweet || true)"
fi
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
  echo "y-sweet binary not found; install it with:" >&2
  echo "  cargo install --locked y-sweet@0.9.1 --root $TOOLS" >&2
  exit 1
fi
STORE="${2:-$(mktemp -d /tmp/ysweet-bench.XXXXXX)}"
mkdir -p "$STORE"
echo "y-sweet store: $STORE" >&2
export RUST_LOG="${RUST_LOG:-warn}"
exec "$BIN" serve "$STORE" --host 127.0.0.1 --port "$PORT" --prod
