#!/usr/bin/env bash
# `make demo`: local Kafka and Redis, usage_monitor, the notifier, a local webhook receiver,
# and a synthetic fleet, with a live view. Ctrl-C stops everything this script started
# (a stack that was already up stays up).
#
# DEMO_CARDS (2000), DEMO_RATE (1000 records/s), DEMO_RECORDS (0: endless),
# DEMO_SECONDS (0: until Ctrl-C), KAFKA_IMPL (apache | tansu).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEMO=$ROOT/.local/demo
mkdir -p "$DEMO"
export KAFKA_IMPL=${KAFKA_IMPL:-apache}
export USAGE_MONITOR_TOPIC_PARTITIONS=${USAGE_MONITOR_TOPIC_PARTITIONS:-4}
export USAGE_MONITOR_REDIS_SHARDS=${USAGE_MONITOR_REDIS_SHARDS:-4}
export NOTIFIER_ALLOW_PRIVATE_WEBHOOKS=true  # the receiver listens on 127.0.0.1
export NOTIFIER_REDIS_PREFIX=${NOTIFIER_REDIS_PREFIX:-nt-demo}
if [[ $KAFKA_IMPL == tansu ]]; then
  export USAGE_MONITOR_PRODUCER_IDEMPOTENCE=false NOTIFIER_PRODUCER_IDEMPOTENCE=false
fi
SECRET=whsec_ZGVtby1zZWNyZXQtZm9yLXNpbXdhdGNo
RECEIVER_PORT=${DEMO_RECEIVER_PORT:-6068}

started_stack=0
pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((started_stack)); then scripts/stack.sh down; fi
  echo "demo: stopped (logs in $DEMO)"
}
trap cleanup EXIT INT TERM

wait_http() {
  for _ in $(seq 1 120); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "demo: $2 did not start; see $DEMO"; exit 1
}

if ! scripts/stack.sh status; then
  scripts/stack.sh up
  started_stack=1
fi

.venv/bin/python scripts/webhook_receiver.py --port "$RECEIVER_PORT" --secret "$SECRET" \
  >"$DEMO/receiver.log" 2>&1 &
pids+=($!)
.venv/bin/usage-monitor worker --loglevel warning >"$DEMO/usage-monitor.log" 2>&1 &
pids+=($!)
.venv/bin/notifier --loglevel warning >"$DEMO/notifier.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$RECEIVER_PORT/stats" "the webhook receiver"
wait_http http://127.0.0.1:6066/health usage_monitor
wait_http http://127.0.0.1:6067/health notifier

echo "demo: usage_monitor http://127.0.0.1:6066/cards/<iccid>, /metrics; notifier :6067/metrics"
.venv/bin/usage-monitor simulate --quiet --cards "${DEMO_CARDS:-2000}" --rate "${DEMO_RATE:-1000}" \
  --records "${DEMO_RECORDS:-0}" --webhook-url "http://127.0.0.1:$RECEIVER_PORT/hook" \
  --webhook-secret "$SECRET" >"$DEMO/simulate.log" 2>&1 &
pids+=($!)
if [[ ${DEMO_SECONDS:-0} != 0 ]]; then
  timeout --foreground "$DEMO_SECONDS" .venv/bin/usage-monitor watch \
    --receiver "http://127.0.0.1:$RECEIVER_PORT/stats" || true
else
  .venv/bin/usage-monitor watch --receiver "http://127.0.0.1:$RECEIVER_PORT/stats"
fi
