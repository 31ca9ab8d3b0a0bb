#!/usr/bin/env bash
# `make demo`: local Kafka and Redis, a usage_monitor worker, and a synthetic fleet.
# Ctrl-C stops everything this script started (a stack that was already up stays up).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEMO=$ROOT/.local/demo
mkdir -p "$DEMO"
export KAFKA_IMPL=${KAFKA_IMPL:-apache}
export USAGE_MONITOR_TOPIC_PARTITIONS=${USAGE_MONITOR_TOPIC_PARTITIONS:-4}
export USAGE_MONITOR_REDIS_SHARDS=${USAGE_MONITOR_REDIS_SHARDS:-4}
if [[ $KAFKA_IMPL == tansu ]]; then export USAGE_MONITOR_PRODUCER_IDEMPOTENCE=false; fi
RATE=${DEMO_RATE:-1000}
CARDS=${DEMO_CARDS:-2000}

started_stack=0
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((started_stack)); then scripts/stack.sh down; fi
  echo "demo: stopped"
}
trap cleanup EXIT INT TERM

if ! scripts/stack.sh status; then
  scripts/stack.sh up
  started_stack=1
fi

.venv/bin/usage-monitor worker --loglevel warning >"$DEMO/usage-monitor.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
  curl -fsS http://127.0.0.1:6066/health >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS http://127.0.0.1:6066/health >/dev/null || { echo "demo: worker did not start; see $DEMO/usage-monitor.log"; exit 1; }

echo "demo: usage_monitor on http://127.0.0.1:6066 (try /cards/89860400000000000001 and /metrics)"
echo "demo: streaming $RATE records/s from $CARDS cards; Ctrl-C to stop"
.venv/bin/usage-monitor simulate --cards "$CARDS" --rate "$RATE" --records "${DEMO_RECORDS:-0}" &
pids+=($!)
while kill -0 "${pids[1]}" 2>/dev/null; do
  sleep 5
  curl -fsS http://127.0.0.1:6066/metrics 2>/dev/null | awk '
    /^usage_monitor_records_total/ {split($1, a, "\""); rec[a[2]] = $2}
    /^usage_monitor_commands_total/ {cmd += $2}
    /^usage_monitor_alerts_total/ {alr += $2}
    END {printf "demo: records applied=%d duplicate=%d dead_lettered=%d | alerts=%d commands=%d\n",
         rec["applied"], rec["duplicate"], rec["dead_lettered"], alr, cmd}' || true
done
