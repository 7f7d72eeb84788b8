#!/usr/bin/env bash
# Yjs benchmark: the gateway's yjs-sync plugin side by side with @y/websocket-server, Hocuspocus and
# y-sweet, on this machine, in one run. Every scenario gets a fresh server on a free 127.0.0.1 port;
# the server is stopped afterwards (also on Ctrl-C / error). One table row per server at the end.
#
#   benches/yjs/run.sh                                   all servers, all scenarios
#   SERVERS="hocuspocus y-sweet" SCENARIOS="latency" benches/yjs/run.sh
#
# Environment (defaults in brackets):
#   SERVERS      gateway-embedded gateway-redis y-websocket-server hocuspocus y-sweet
#   SCENARIOS    throughput latency idle
#   DURATION     measured seconds per load scenario [10]
#   THREADS      load generator threads [2]
#   IDLE_ROOMS   rooms for the idle scenario [1000]
#   RESULTS      directory for the JSON results [benches/yjs/results/<timestamp>]
#   RUN_BUDGET   seconds; scenarios that would start after this are skipped [1500]
#   YJS_GEN      load generator for the gateway rows' throughput and latency scenarios: rust
#                (yjs-load, the Rust port of load.mjs) or node (load.mjs) [rust]; the other
#                servers and the idle scenario always use load.mjs
#   YJS_LOAD_BIN yjs-load binary [${CARGO_TARGET_DIR:-<repo>/target}/release/yjs-load]
#   GATEWAY_BIN, YJS_WASM, Y_SWEET_BIN   override binary locations (see servers/*.sh)
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE"
SERVERS="${SERVERS:-gateway-embedded gateway-redis y-websocket-server hocuspocus y-sweet}"
SCENARIOS="${SCENARIOS:-throughput latency idle}"
DURATION="${DURATION:-10}"
THREADS="${THREADS:-2}"
IDLE_ROOMS="${IDLE_ROOMS:-1000}"
RUN_BUDGET="${RUN_BUDGET:-1500}"
RESULTS="${RESULTS:-$HERE/results/$(date +%Y%m%d-%H%M%S)}"
YJS_GEN="${YJS_GEN:-rust}"
YJS_LOAD_BIN="${YJS_LOAD_BIN:-${CARGO_TARGET_DIR:-$(cd "$HERE/../.." && pwd)/target}/release/yjs-load}"
mkdir -p "$RESULTS"
WORK="$(mktemp -d /tmp/yjs-bench.XXXXXX)"
START_TS=$(date +%s)

die() { echo "run.sh: $*" >&2; exit 1; }
command -v node >/dev/null || die "node (>= 20) is required"
command -v jq >/dev/null || die "jq is required"
case "$YJS_GEN" in
  node) ;;
  rust)
    if [[ " $SERVERS " == *" gateway-"* ]] && [ ! -x "$YJS_LOAD_BIN" ]; then
      die "yjs-load not found at $YJS_LOAD_BIN: build it with 'cargo build --release -p gateway-benches --bin yjs-load' (or YJS_GEN=node)"
    fi ;;
  *) die "YJS_GEN must be rust or node" ;;
esac
if [ ! -d node_modules/@y/websocket-server ] || [ ! -d node_modules/@hocuspocus/server ]; then
  echo "installing the pinned npm packages (npm ci)..." >&2
  npm ci --no-audit --no-fund >&2 || die "npm ci failed"
fi

SERVER_PIDS=()   # processes to stop on exit: server (and redis)
stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
stop_all() { # newest first: the gateway before its redis-server
  local i
  for (( i=${#SERVER_PIDS[@]}-1; i>=0; i-- )); do stop_pid "${SERVER_PIDS[$i]}"; done
  SERVER_PIDS=()
}
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}
# wait_port PORT PID SECONDS: 0 when PORT accepts connections, 1 if PID died or the time ran out
wait_port() {
  local port=$1 pid=$2 deadline=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}

# start_server NAME LOG -> sets PORT, PIDS (comma list for --server-pid), TARGET; returns 1 with
# SKIP_REASON when the server cannot run
start_server() {
  local name=$1 log=$2 rport rpid pid
  PORT=$(free_port)
  PIDS=""
  SKIP_REASON=""
  local stmp="$WORK/$name-$PORT"
  mkdir -p "$stmp"
  case "$name" in
    gateway-embedded)
      TARGET=gateway
      BENCH_TMP="$stmp" setsid servers/gateway.sh "$PORT" embedded >"$log" 2>&1 &
      pid=$! ;;
    gateway-redis)
      TARGET=gateway
      command -v redis-server >/dev/null || { SKIP_REASON="redis-server not installed (apt-get install redis-server)"; return 1; }
      rport=$(free_port)
      setsid redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$stmp" >"$log.redis" 2>&1 &
      rpid=$!
      SERVER_PIDS+=("$rpid")
      if ! wait_port "$rport" "$rpid" 10; then SKIP_REASON="redis-server did not start: $(tail -1 "$log.redis")"; return 1; fi
      BENCH_TMP="$stmp" setsid servers/gateway.sh "$PORT" redis "redis://127.0.0.1:$rport" >"$log" 2>&1 &
      pid=$!
      PIDS=",$rpid" ;;
    y-websocket-server)
      TARGET=y-websocket
      setsid servers/y-websocket-server.sh "$PORT" >"$log" 2>&1 &
      pid=$! ;;
    hocuspocus)
      TARGET=hocuspocus
      setsid node servers/hocuspocus.mjs "$PORT" >"$log" 2>&1 &
      pid=$! ;;
    y-sweet)
      TARGET=y-sweet
      setsid servers/y-sweet.sh "$PORT" "$stmp/store" >"$log" 2>&1 &
      pid=$! ;;
    *) SKIP_REASON="unknown server $name"; return 1 ;;
  esac
  SERVER_PIDS+=("$pid")
  PIDS="$pid$PIDS"
  if ! wait_port "$PORT" "$pid" 30; then
    SKIP_REASON="did not start: $(grep -v '^ *[0-9]*: \|^ *at \|Stack backtrace' "$log" | grep -v '^$' | tail -2 | tr '\n|' ' /' | cut -c1-300)"
    return 1
  fi
  return 0
}

scenario_args() {
  case "$1" in
    throughput) echo "--rooms 10 --clients 10 --rate 0 --window 16 --duration $DURATION" ;;
    latency) echo "--rooms 50 --clients 5 --rate 10 --duration $DURATION" ;;
    idle) echo "--idle-rooms $IDLE_ROOMS --settle 2" ;;
  esac
}

echo "results: $RESULTS" >&2
if pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null; then
  echo "WARNING: cargo/rustc is running on this machine: figures will be noisy" >&2
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs" >&2

declare -A SKIPPED
for server in $SERVERS; do
  for scen in $SCENARIOS; do
    if [ $(( $(date +%s) - START_TS )) -gt "$RUN_BUDGET" ]; then
      echo "== $server $scen: skipped (RUN_BUDGET $RUN_BUDGET s used up)" >&2
      continue
    fi
    [ -n "${SKIPPED[$server]:-}" ] && continue
    log="$RESULTS/$server-$scen.server.log"
    echo "== $server $scen" >&2
    if ! start_server "$server" "$log"; then
      SKIPPED[$server]="$SKIP_REASON"
      echo "   skipped: $SKIP_REASON" >&2
      stop_all
      continue
    fi
    gen=(node load.mjs)
    if [ "$TARGET" = gateway ] && [ "$YJS_GEN" = rust ] && [ "$scen" != idle ]; then
      gen=("$YJS_LOAD_BIN")
    fi
    # shellcheck disable=SC2046
    timeout -k 5 240 "${gen[@]}" --target "$TARGET" --port "$PORT" --server-pid "$PIDS" --threads "$THREADS" \
      --timeout 200 $(scenario_args "$scen") >"$RESULTS/$server-$scen.out" 2>"$RESULTS/$server-$scen.err"
    rc=$?
    tail -1 "$RESULTS/$server-$scen.out" >&2
    [ $rc -ne 0 ] && echo "   load exited with $rc (see $RESULTS/$server-$scen.err)" >&2
    head -1 "$RESULTS/$server-$scen.out" > "$RESULTS/$server-$scen.json"
    # a server that died during the run is reported, not silently measured as slow
    for p in "${SERVER_PIDS[@]}"; do
      kill -0 "$p" 2>/dev/null || echo "   WARNING: server process $p exited during the run (see $log)" >&2
    done
    stop_all
  done
done

# ---------------------------------------------------------------- table
j() { # j FILE JQ-EXPR: prints the value or '-'
  [ -s "$1" ] || { echo "-"; return; }
  local v
  v=$(jq -r "$2" "$1" 2>/dev/null) || v="-"
  [ -z "$v" ] || [ "$v" = null ] && v="-"
  echo "$v"
}
{
  echo
  echo "| server | throughput: updates/s | deliveries/s | p99 ms | latency: p50 / p99 / max ms | lost | server CPU | client CPU | other CPU | idle KiB/room |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for server in $SERVERS; do
    if [ -n "${SKIPPED[$server]:-}" ]; then
      echo "| $server | skipped: ${SKIPPED[$server]} | | | | | | | | |"
      continue
    fi
    t="$RESULTS/$server-throughput.json"; l="$RESULTS/$server-latency.json"; i="$RESULTS/$server-idle.json"
    scpu='[.results.server[] | .cpu_cores] | add | . * 1000 | round / 1000'
    echo "| $server | $(j "$t" '.results.updates_sent_per_s') | $(j "$t" '.results.deliveries_per_s') | $(j "$t" '.results.latency_ms.p99')" \
      "| $(j "$l" '"\(.results.latency_ms.p50) / \(.results.latency_ms.p99) / \(.results.latency_ms.max)"')" \
      "| $(j "$t" '.results.lost') / $(j "$l" '.results.lost') | $(j "$t" "$scpu") / $(j "$l" "$scpu")" \
      "| $(j "$t" '.results.client_cpu_cores') / $(j "$l" '.results.client_cpu_cores')" \
      "| $(j "$t" '.results.other_cpu_cores') / $(j "$l" '.results.other_cpu_cores') | $(j "$i" '.results.server_kb_per_room') |"
  done
  echo
  echo "throughput: 10 rooms x 10 clients, all writing, 16 updates in flight each (--rate 0); latency: 50 rooms x 5 clients x 10 updates/s."
  echo "Pairs are throughput / latency scenario. CPU in cores over the measured window; other CPU = the rest of the machine (noise)."
  echo "Load generator: load.mjs; for the gateway rows' throughput and latency scenarios $([ "$YJS_GEN" = rust ] && echo "yjs-load (Rust port)" || echo "load.mjs too") (YJS_GEN=$YJS_GEN)."
  echo "Raw JSON per scenario: $RESULTS/*.json"
} | tee "$RESULTS/table.md"
