#!/usr/bin/env bash
# Cost curves (issue 14, item 5): runs the sweeps and draws the charts, in one command.
#
#   benches/run-curves.sh                  all three sweeps, then the charts
#   CURVES=idle benches/run-curves.sh      one sweep
#   benches/run-curves.sh --plot-only      (or PLOT_ONLY=1) redraw the charts from the CSVs in $OUT
#
# Curves, each written as $OUT/<name>.csv (series,x,y[,y2] plus extra columns that plot.py
# ignores), $OUT/<name>.subtitle (date, load average, what was fixed) and, through
# benches/plot.py --png, $OUT/<name>.svg and .png; every load tool summary goes to $OUT/<name>.log:
#   fanout      fan-out deliveries/s (y) and p99 (y2) vs subscribers N, gateway (chat plugin,
#               shipped config, --users 1) beside bare-server (--size 230, the chat frame's size),
#               at a FIXED OFFERED LOAD: the publisher sends $FANOUT_LOAD / N msgs/s for
#               $PUBLISH_S s, so every point asks for the same deliveries/s and only the shape
#               (few subscribers and many publishes, or many subscribers and few) changes.
#   fanout-cpu  server CPU per delivery (µs) vs N from the same runs, and the load tool's.
#   idle        RSS per idle connection (KiB) vs connections, gateway beside bare-server, fresh
#               server processes per point, with the 4 KiB target as a reference line.
#   yjs         Yjs deliveries/s (y) and p99 (y2) vs rooms, gateway-embedded and gateway-redis:
#               $YJS_CLIENTS clients per room, one writer per room at $YJS_RATE updates/s.
#
# Environment (defaults in brackets):
#   CURVES          which sweeps to run ["fanout idle yjs"]
#   FANOUT_NS       subscribers ["100 300 1000 3000 10000 19000"]
#   FANOUT_LOAD     offered deliveries/s per point [2000000]
#   PUBLISH_S       seconds of publishing per fan-out point [5]
#   REPEAT          fan-out runs per point and server; the one with the median p99 is kept [3]
#   IDLE_NS         idle connections ["1000 2000 5000 10000 19000"]
#   IDLE_S          seconds each idle point holds its connections [5]
#   YJS_ROOMS       rooms ["10 50 200 1000"]
#   YJS_CLIENTS     clients per room [5]      YJS_RATE  updates/s per writer [20]
#   YJS_GEN         Yjs load generator: rust ($BIN/yjs-load, a port of load.mjs) or node
#                   (benches/yjs/load.mjs, which saturates at ~80k deliveries/s on 2 cores) [rust]
#   DURATION        measured seconds per Yjs point [5]
#   YJS_BUDGET      seconds; Yjs points that would start after this are skipped [600]
#   QUIET_WAIT      seconds to wait for valgrind/cargo/rustc or another bench's load tool /
#                   bare-server to finish before a sweep [900]; POINT_WAIT likewise before a point [180]
#   OUT             output directory [benches/curves]
#   CARGO_TARGET_DIR  where the release binaries are [target]
#
# N stops at 19,000 here: this sandbox's hard RLIMIT_NOFILE is 20,000 and cannot be raised
# without CAP_SYS_RESOURCE, so no process (server or load tool) holds more sockets than that.
# Bounded: every load run is capped with `timeout`, every process is killed on exit, 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

PLOT_ONLY=${PLOT_ONLY:-}
for arg in "$@"; do
  case "$arg" in
    --plot-only) PLOT_ONLY=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

CURVES=${CURVES:-"fanout idle yjs"}
FANOUT_NS=${FANOUT_NS:-"100 300 1000 3000 10000 19000"}
FANOUT_LOAD=${FANOUT_LOAD:-2000000}
PUBLISH_S=${PUBLISH_S:-5}
REPEAT=${REPEAT:-3}
IDLE_NS=${IDLE_NS:-"1000 2000 5000 10000 19000"}
IDLE_S=${IDLE_S:-5}
YJS_ROOMS=${YJS_ROOMS:-"10 50 200 1000"}
YJS_CLIENTS=${YJS_CLIENTS:-5}
YJS_RATE=${YJS_RATE:-20}
YJS_GEN=${YJS_GEN:-rust}
DURATION=${DURATION:-5}
YJS_BUDGET=${YJS_BUDGET:-600}
QUIET_WAIT=${QUIET_WAIT:-900}
POINT_WAIT=${POINT_WAIT:-180}
OUT=${OUT:-benches/curves}
BIN=${CARGO_TARGET_DIR:-target}/release
export GATEWAY_JWT_SECRET=${GATEWAY_JWT_SECRET:-curves-bench-secret-0123456789abcdef}

mkdir -p "$OUT"

# ------------------------------------------------------------------------------------ charts
plot() { # name, plot.py arguments...
  local name=$1; shift
  if [[ ! -s "$OUT/$name.csv" ]]; then
    echo "no $OUT/$name.csv: chart $name skipped" >&2
    return 0
  fi
  local sub=""
  [[ -s "$OUT/$name.subtitle" ]] && sub=$(head -1 "$OUT/$name.subtitle")
  python3 benches/plot.py --csv "$OUT/$name.csv" --out "$OUT/$name.svg" --subtitle "$sub" --png "$@"
}
plot_all() {
  plot fanout --title "Fan-out at a fixed offered load of $(fmt_m "$FANOUT_LOAD") deliveries/s" \
    --x-label "subscribers N (publish rate = $(fmt_m "$FANOUT_LOAD") / N msgs/s)" \
    --y-label "deliveries/s" --y2-label "p99 latency (ms)" --log-x --log-y2
  plot fanout-cpu --title "Server CPU per delivery vs subscribers (same runs)" \
    --x-label "subscribers N (publish rate = $(fmt_m "$FANOUT_LOAD") / N msgs/s)" \
    --y-label "CPU per delivery (µs, user + system)" --log-x
  plot idle --title "RSS per idle connection vs connections held" \
    --x-label "idle connections held (one ping each)" --y-label "server RSS per connection (KiB)" \
    --log-x --ref "4=target ≤ 4 KiB"
  plot yjs --title "Yjs: deliveries/s and p99 vs rooms" \
    --x-label "rooms ($YJS_CLIENTS clients each, 1 writer at $YJS_RATE updates/s)" \
    --y-label "deliveries/s" --y2-label "p99 latency (ms)" --log-x --log-y --log-y2
}
fmt_m() { awk -v v="$1" 'BEGIN { if (v >= 1e6) printf "%g M", v / 1e6; else if (v >= 1e3) printf "%g k", v / 1e3; else printf "%g", v }'; }

if [[ -n "$PLOT_ONLY" ]]; then
  plot_all
  exit 0
fi

# ------------------------------------------------------------------------------- preflight
need() { # file, how to build it
  [[ -e "$1" ]] || { echo "missing $1: build it with: $2" >&2; exit 1; }
}
for c in $CURVES; do
  case "$c" in
    fanout|idle)
      need "$BIN/gateway" "cargo build --release -p gateway -p gateway-benches"
      need "$BIN/load" "cargo build --release -p gateway -p gateway-benches"
      need "$BIN/bare-server" "cargo build --release -p gateway -p gateway-benches"
      need dist/plugins/chat.wasm "scripts/build-plugins" ;;
    yjs)
      need "$BIN/gateway" "cargo build --release -p gateway"
      need dist/plugins/yjs_sync.wasm "scripts/build-plugins"
      case "$YJS_GEN" in
        rust) need "$BIN/yjs-load" "cargo build --release -p gateway-benches --bin yjs-load" ;;
        node)
          need benches/yjs/node_modules/yjs "(cd benches/yjs && npm ci)"
          command -v node >/dev/null || { echo "node (>= 20) is required for YJS_GEN=node" >&2; exit 1; } ;;
        *) echo "YJS_GEN must be rust or node, not $YJS_GEN" >&2; exit 2 ;;
      esac
      command -v redis-server >/dev/null || { echo "redis-server is required for the yjs curve (apt-get install redis-server)" >&2; exit 1; } ;;
    *) echo "unknown curve $c (fanout, idle, yjs)" >&2; exit 2 ;;
  esac
done
command -v jq >/dev/null || { echo "jq is required" >&2; exit 1; }

# shellcheck source=benches/lib.sh
source benches/lib.sh

# Another engineer's valgrind or a build on the same 2 cores would show up as our cost: wait
# (bounded) until none runs. valgrind runs as <tool>-<arch> (memcheck-amd64-…), so match those too.
# Another bench's load tool or bare server (not ours: $pids are left out) counts too.
others() { pgrep -x "$1" | grep -vxF -f <(printf '%s\n' 0 "${pids[@]}") ; }
busy() {
  local t
  others load >/dev/null || others bare-server >/dev/null || others yjs-load >/dev/null ||
  pgrep -x valgrind >/dev/null || pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null ||
    { for t in memcheck callgrind cachegrind massif helgrind drd dhat; do pgrep "^$t-" && break; done; } >/dev/null
}
wait_quiet() {
  local deadline=$(( $(date +%s) + QUIET_WAIT )) said=
  while busy; do
    if (( $(date +%s) >= deadline )); then
      echo "WARNING: valgrind/cargo/rustc/another bench still running after ${QUIET_WAIT}s; measuring anyway" >&2
      QUIET_NOTE=", valgrind/cargo busy"
      return 0
    fi
    [[ -z "$said" ]] && { echo "waiting for valgrind/cargo/rustc/another bench to finish (up to ${QUIET_WAIT}s)..." >&2; said=1; }
    sleep 10
  done
  QUIET_NOTE=""
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# The subtitle: when, where, and the load average before the sweep started (noise check).
# Line 1 is the chart's subtitle (short: it must fit 900 px), line 2 the details.
subtitle() { # name, short text, details
  { echo "$(date +%Y-%m-%d), $(nproc) cores shared with the load tool, load avg ${LOAD_BEFORE%% *}$QUIET_NOTE; $2"
    echo "load average before the sweep: $LOAD_BEFORE; $3; git $(git describe --always --dirty 2>/dev/null || echo '?'), gateway binary built $(date -r "$BIN/gateway" '+%Y-%m-%d %H:%M')"
  } > "$OUT/$1.subtitle"
}

stop_pid() { # TERM, up to 10 s (the gateway drains), then KILL; reaps
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_servers() { local i; for (( i=${#pids[@]}-1; i>=0; i-- )); do stop_pid "${pids[$i]}"; done; pids=(); }

# start_server gateway|bare -> PORT, PID, URL
start_server() {
  PORT=$(free_port)
  case "$1" in
    gateway)
      shipped_config gateway "$PORT" > "$work/gateway.toml"
      RUST_LOG=warn "$BIN/gateway" serve --config "$work/gateway.toml" >"$work/server.log" 2>&1 &
      PID=$!; URL="ws://127.0.0.1:$PORT/ws" ;;
    bare)
      "$BIN/bare-server" --listen "127.0.0.1:$PORT" >"$work/server.log" 2>&1 &
      PID=$!; URL="ws://127.0.0.1:$PORT/ws" ;;
  esac
  pids+=("$PID")
  wait_port "$PORT"
}

# Before each point: wait (up to POINT_WAIT s) while another bench or build runs; noted in the log.
point_quiet() { # log name
  local deadline=$(( $(date +%s) + POINT_WAIT ))
  while busy && (( $(date +%s) < deadline )); do sleep 5; done
  if busy; then echo "   (another bench/build was running during this point)" | tee -a "$OUT/$1.log" >&2; fi
  return 0
}

# run_load LOG-NAME TIMEOUT command... : stdout to $work/out; the JSON line in $JSON ("" on failure)
run_load() {
  local name=$1 t=$2 rc=0; shift 2
  point_quiet "$name"
  timeout -k 5 "$t" "$@" >"$work/out" 2>"$work/err" || rc=$?
  JSON=$(sed -n 1p "$work/out")
  jq -e . >/dev/null 2>&1 <<<"$JSON" || JSON=""
  local summary
  summary=$(sed -n 2p "$work/out")
  [[ -z "$summary" ]] && summary="(no result, exit $rc: $(tail -1 "$work/err"))"
  echo "   $summary" >&2
  echo "$summary" >> "$OUT/$name.log"
  return 0
}
j() { jq -r "$1 // empty" <<<"$JSON"; }

# --------------------------------------------------------------------- (a) fan-out sweep
sweep_fanout() {
  wait_quiet
  LOAD_BEFORE=$(loadavg)
  echo "== fanout: N in $FANOUT_NS, $FANOUT_LOAD deliveries/s offered, load avg $LOAD_BEFORE" >&2
  : > "$OUT/fanout.log"
  echo "series,x,y,y2,p50_ms,delivery_ratio,subscribers_lost,publish_rate,published,server_cpu_us_per_delivery,load_cpu_us_per_delivery" > "$work/fanout.csv"
  echo "series,x,y" > "$work/fanout-cpu.csv"
  local n kind rate msgs label r
  for n in $FANOUT_NS; do
    rate=$(( FANOUT_LOAD / n ))
    (( rate > 0 )) || rate=1
    msgs=$(( rate * PUBLISH_S ))
    : > "$work/runs-gateway"; : > "$work/runs-bare"
    # REPEAT runs per point, gateway and bare interleaved; the run with the median p99 is kept
    for (( r = 1; r <= REPEAT; r++ )); do
      for kind in gateway bare; do
        case "$kind" in
          gateway) label="gateway (chat)"; set -- --mode chat --users 1 ;;
          bare) label="bare server (230 B)"; set -- --mode bare --size 230 ;;
        esac
        echo "-- $label, 1 -> $n at $rate msgs/s, run $r/$REPEAT" >&2
        echo "# $label, 1 -> $n at $rate msgs/s, run $r/$REPEAT" >> "$OUT/fanout.log"
        start_server "$kind"
        run_load fanout 130 "$BIN/load" fanout "$@" --url "$URL" --conns "$n" --rate "$rate" \
          --messages "$msgs" --sources 4 --concurrency 200 --server-pid "$PID" --timeout 120
        stop_servers
        [[ -n "$JSON" && -n "$(j .results.deliveries_per_s)" ]] && echo "$JSON" >> "$work/runs-$kind"
      done
    done
    for kind in gateway bare; do
      [[ -s "$work/runs-$kind" ]] || continue
      case "$kind" in gateway) label="gateway (chat)" ;; bare) label="bare server (230 B)" ;; esac
      JSON=$(jq -sc 'sort_by(.results.latency.p99_ms) | .[length / 2 | floor]' "$work/runs-$kind")
      echo "$label,$n,$(j .results.deliveries_per_s),$(j .results.latency.p99_ms),$(j .results.latency.p50_ms),$(j .results.delivery_ratio),$(j '.results.subscribers_lost | length'),$(j .results.publish_rate),$(j .results.published),$(j .results.server_cpu_us_per_delivery),$(j .results.load_cpu_us_per_delivery)" >> "$work/fanout.csv"
      echo "$label,$n,$(j .results.server_cpu_us_per_delivery)" >> "$work/fanout-cpu.csv"
      [[ "$kind" == gateway ]] && echo "load tool (gateway runs),$n,$(j .results.load_cpu_us_per_delivery)" >> "$work/fanout-cpu.csv"
    done
  done
  # the load tool's series last, so the server lines keep the first two colours
  { head -1 "$work/fanout-cpu.csv"; tail -n +2 "$work/fanout-cpu.csv" | grep -v '^load tool'; grep '^load tool' "$work/fanout-cpu.csv" || true; } > "$OUT/fanout-cpu.csv"
  cp "$work/fanout.csv" "$OUT/fanout.csv"
  local runs="median p99 of $REPEAT runs"; (( REPEAT > 1 )) || runs="1 run per point"
  subtitle fanout "${PUBLISH_S} s per point, $runs" \
    "publish rate $FANOUT_LOAD/N msgs/s for ${PUBLISH_S} s, load --sources 4 --concurrency 200, $REPEAT runs per point (median p99 kept)"
  subtitle fanout-cpu "${PUBLISH_S} s per point, $runs" \
    "server CPU (user + system from /proc) / deliveries over the publish and delivery window"
}

# ------------------------------------------------------------------------ (b) idle sweep
sweep_idle() {
  wait_quiet
  LOAD_BEFORE=$(loadavg)
  echo "== idle: N in $IDLE_NS, load avg $LOAD_BEFORE" >&2
  : > "$OUT/idle.log"
  echo "series,x,y,asked,connected,server_idle_cpu_pct,server_rss_before_kib,server_rss_after_kib" > "$work/idle.csv"
  local n kind label
  for n in $IDLE_NS; do
    for kind in gateway bare; do
      case "$kind" in
        gateway) label="gateway (chat)"; set -- --mode chat --users 1 ;;
        bare) label="bare server"; set -- --mode bare ;;
      esac
      echo "-- $label, $n idle connections" >&2
      echo "# $label, $n idle connections" >> "$OUT/idle.log"
      start_server "$kind"
      run_load idle 130 "$BIN/load" idle "$@" --url "$URL" --conns "$n" --concurrency 200 --ping \
        --duration "$IDLE_S" --sources 2 --server-pid "$PID" --timeout 120
      stop_servers
      [[ -n "$JSON" && -n "$(j .results.server_kib_per_conn)" ]] || continue
      # x is the number of connections actually held (the fd limit may stop short of N)
      echo "$label,$(j .results.connected),$(j .results.server_kib_per_conn),$n,$(j .results.connected),$(j .results.server_idle_cpu_pct),$(j .results.server_rss_before_kib),$(j .results.server_rss_after_kib)" >> "$work/idle.csv"
    done
  done
  cp "$work/idle.csv" "$OUT/idle.csv"
  subtitle idle "N ≤ 19k: hard fd limit 20k here" \
    "fresh server per point, (RSS after - RSS before) / connections held; sandbox hard RLIMIT_NOFILE 20,000, not raisable"
}

# ------------------------------------------------------------------------- (c) Yjs sweep
sweep_yjs() {
  wait_quiet
  LOAD_BEFORE=$(loadavg)
  echo "== yjs: rooms in $YJS_ROOMS, $YJS_CLIENTS clients/room, 1 writer at $YJS_RATE/s, $YJS_GEN generator, load avg $LOAD_BEFORE" >&2
  : > "$OUT/yjs.log"
  echo "series,x,y,y2,p50_ms,delivery_ratio,lost,synced,clients,updates_sent_per_s,server_cpu_cores,client_cpu_cores" > "$work/yjs.csv"
  local start rooms mode rport rpid pids_arg stopped="" gen gen_name
  case "$YJS_GEN" in
    node) gen=(node benches/yjs/load.mjs); gen_name="load.mjs" ;;
    *) gen=("$BIN/yjs-load"); gen_name="yjs-load" ;;
  esac
  start=$(date +%s)
  export GATEWAY_BIN="$PWD/$BIN/gateway" YJS_WASM="$PWD/dist/plugins/yjs_sync.wasm"
  for rooms in $YJS_ROOMS; do
    for mode in embedded redis; do
      if (( $(date +%s) - start > YJS_BUDGET )); then
        echo "-- gateway-$mode, $rooms rooms: skipped (YJS_BUDGET ${YJS_BUDGET}s used up)" >&2
        echo "# gateway-$mode, $rooms rooms: skipped (YJS_BUDGET ${YJS_BUDGET}s used up)" >> "$OUT/yjs.log"
        stopped=1; continue
      fi
      echo "-- gateway-$mode, $rooms rooms" >&2
      echo "# gateway-$mode, $rooms rooms x $YJS_CLIENTS clients, 1 writer at $YJS_RATE/s ($gen_name)" >> "$OUT/yjs.log"
      PORT=$(free_port)
      mkdir -p "$work/yjs-$mode-$rooms"
      pids_arg=""
      if [[ "$mode" == redis ]]; then
        rport=$(free_port)
        redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work/yjs-$mode-$rooms" >"$work/redis.log" 2>&1 &
        rpid=$!; pids+=("$rpid"); pids_arg=",$rpid"
        wait_port "$rport"
        BENCH_TMP="$work/yjs-$mode-$rooms" benches/yjs/servers/gateway.sh "$PORT" redis "redis://127.0.0.1:$rport" >"$work/server.log" 2>&1 &
      else
        BENCH_TMP="$work/yjs-$mode-$rooms" benches/yjs/servers/gateway.sh "$PORT" embedded >"$work/server.log" 2>&1 &
      fi
      PID=$!; pids+=("$PID")
      wait_port "$PORT"
      run_load yjs 160 "${gen[@]}" --quiet --target gateway --port "$PORT" --server-pid "$PID$pids_arg" \
        --rooms "$rooms" --clients "$YJS_CLIENTS" --writers 1 --rate "$YJS_RATE" --duration "$DURATION" \
        --threads 2 --timeout 150
      stop_servers
      [[ -n "$JSON" && -n "$(j .results.deliveries_per_s)" ]] || continue
      echo "gateway-$mode,$rooms,$(j .results.deliveries_per_s),$(j .results.latency_ms.p99),$(j .results.latency_ms.p50),$(j .results.delivery_ratio),$(j .results.lost),$(j .results.synced),$(j .results.clients),$(j .results.updates_sent_per_s),$(j '[.results.server[].cpu_cores] | add'),$(j .results.client_cpu_cores)" >> "$work/yjs.csv"
    done
  done
  cp "$work/yjs.csv" "$OUT/yjs.csv"
  subtitle yjs "${DURATION} s per point${stopped:+, later points skipped (time)}" \
    "${DURATION} s measured per point, fresh gateway (and redis-server) per point, $gen_name --threads 2${stopped:+; points after YJS_BUDGET skipped}"
}

QUIET_NOTE=""
for c in $CURVES; do
  "sweep_$c"
done
plot_all
