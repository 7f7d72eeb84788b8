# Shared by the bench scripts (sourced): a scratch directory, the processes to kill on exit,
# free loopback ports and waiting for a port to listen.

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2; exit 1
}

# The shipped plugins.toml for instance NAME listening on PORT, with its own data directories
# under $work and absolute plugin paths, and without the per-connection rate limits (the load
# generators publish from one connection); extra sed expressions may follow.
shipped_config() { # name port [sed args...]
  local name=$1 port=$2; shift 2
  sed -e "s#^listen = .*#listen = [\"127.0.0.1:$port\"]#" \
      -e "s#^data_dir = .*#data_dir = \"$work/$name-streams\"#" \
      -e "s#^path = \"data/storage\"#path = \"$work/$name-storage\"#" \
      -e "s#^wasm = \"dist/#wasm = \"$PWD/dist/#" \
      -e "s#^cache_dir = .*#cache_dir = \"$PWD/.gateway-cache\"#" \
      -e "s#^max_messages_per_s = .*#max_messages_per_s = 0#" \
      -e "s#^max_bytes_per_s = .*#max_bytes_per_s = 0#" "$@" plugins.toml
}
