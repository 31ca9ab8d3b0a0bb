#!/usr/bin/env bash
# `make demo`: local Kafka and Redis, usage_monitor, the notifier, a local webhook receiver,
# a simulated provisioning adapter (HLR / CMP) and a synthetic fleet, with a live view.
# Ctrl-C stops everything this script started (a stack that was already up stays up).
#
# DEMO_CARDS (2000), DEMO_RATE (1000 records/s), DEMO_RECORDS (0: endless),
# DEMO_SECONDS (0: until Ctrl-C), KAFKA_IMPL (apache | tansu), and the provisioning
# simulator's PROVISIONING_SIM_* (its demo values below; docs/operations.md).
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
# The simulated network: answers 0.5-5 s late; 10 % failed, 5 % lost, 1 % rejected, 5 %
# answered twice; observed every 20 s, 2 % of the suspended cards drifting back to active.
export PROVISIONING_SIM_DELAY_MIN_S=${PROVISIONING_SIM_DELAY_MIN_S:-0.5}
export PROVISIONING_SIM_DELAY_MAX_S=${PROVISIONING_SIM_DELAY_MAX_S:-5}
export PROVISIONING_SIM_FAIL_RATE=${PROVISIONING_SIM_FAIL_RATE:-0.1}
export PROVISIONING_SIM_DROP_RATE=${PROVISIONING_SIM_DROP_RATE:-0.05}
export PROVISIONING_SIM_REJECT_RATE=${PROVISIONING_SIM_REJECT_RATE:-0.01}
export PROVISIONING_SIM_DUPLICATE_RATE=${PROVISIONING_SIM_DUPLICATE_RATE:-0.05}
export PROVISIONING_SIM_OBSERVE_INTERVAL_S=${PROVISIONING_SIM_OBSERVE_INTERVAL_S:-20}
export PROVISIONING_SIM_DRIFT_RATE=${PROVISIONING_SIM_DRIFT_RATE:-0.02}
if [[ $KAFKA_IMPL == tansu ]]; then
  export USAGE_MONITOR_PRODUCER_IDEMPOTENCE=false NOTIFIER_PRODUCER_IDEMPOTENCE=false
  export PROVISIONING_SIM_PRODUCER_IDEMPOTENCE=false
fi
# Every run starts clean: its own topics and consumer groups, and Redis DB 3 emptied.
RUN=demo$(date +%s)
export REDIS_URL=redis://127.0.0.1:${REDIS_PORT:-6379}/3
export USAGE_MONITOR_APP_ID=$RUN-usage-monitor NOTIFIER_GROUP_ID=$RUN-notifier
export USAGE_MONITOR_TOPIC_USAGE=$RUN.usage.records USAGE_MONITOR_TOPIC_EVENTS=$RUN.card.events
export USAGE_MONITOR_TOPIC_COMMANDS=$RUN.card.commands USAGE_MONITOR_TOPIC_ALERTS=$RUN.card.alerts
export USAGE_MONITOR_TOPIC_COMMAND_RESULTS=$RUN.card.command_results
export USAGE_MONITOR_TOPIC_POOLS=$RUN.pool.events
export USAGE_MONITOR_TOPIC_DLQ=$RUN.usage.records.dlq NOTIFIER_TOPIC_DLQ=$RUN.usage.records.dlq
export NOTIFIER_TOPIC_ALERTS=$RUN.card.alerts NOTIFIER_TOPIC_SETTINGS=$RUN.customer.settings
export NOTIFIER_TOPIC_DELIVERY_DLQ=$RUN.notifier.deliveries.dlq
# The customers' webhook secret reaches the receiver and the simulator by environment: a
# command line is visible to every user of the machine (`ps`).
export SIMWATCH_WEBHOOK_SECRET=${SIMWATCH_WEBHOOK_SECRET:-whsec_ZGVtby1zZWNyZXQtZm9yLXNpbXdhdGNo}
RECEIVER_PORT=${DEMO_RECEIVER_PORT:-6068}

started_stack=0
pids=()
cleanup() {
  trap - EXIT INT TERM HUP
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((started_stack)); then scripts/stack.sh down; fi
  echo "demo: stopped (logs in $DEMO)"
}
trap cleanup EXIT INT TERM HUP

wait_http() {
  for _ in $(seq 1 120); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "demo: $2 did not start; see $DEMO"; exit 1
}

for port in 6066 6067 "$RECEIVER_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port is in use (another demo or worker?); stop it first"; exit 1
  fi
done

if ! scripts/stack.sh status; then
  scripts/stack.sh up
  started_stack=1
fi

redis-cli -p "${REDIS_PORT:-6379}" -n 3 flushdb >/dev/null
# The services commit offsets only once Redis has fsynced their writes (WAITAOF, Valkey or
# Redis >= 7.2). A Redis that cannot confirm it (Debian's 7.0 with appendfsync everysec,
# REDIS_IMPL=redis) would stop them at start: the demo then accepts the in-memory level.
if redis-cli -p "${REDIS_PORT:-6379}" waitaof 0 0 0 2>&1 | grep -q ERR; then
  echo "demo: this Redis has no WAITAOF; running with USAGE_MONITOR_DURABILITY=memory"
  export USAGE_MONITOR_DURABILITY=${USAGE_MONITOR_DURABILITY:-memory}
  export NOTIFIER_DURABILITY=${NOTIFIER_DURABILITY:-memory}
fi
.venv/bin/python scripts/webhook_receiver.py --port "$RECEIVER_PORT" >"$DEMO/receiver.log" 2>&1 &
pids+=($!)
.venv/bin/usage-monitor worker --loglevel warning >"$DEMO/usage-monitor.log" 2>&1 &
pids+=($!)
.venv/bin/notifier --loglevel warning >"$DEMO/notifier.log" 2>&1 &
pids+=($!)
# The network (its rates above): answers the commands and reports its own view of the cards.
.venv/bin/provisioning-sim --loglevel warning --group-id "$RUN-provisioning-sim" \
  --topic-commands "$USAGE_MONITOR_TOPIC_COMMANDS" \
  --topic-results "$USAGE_MONITOR_TOPIC_COMMAND_RESULTS" \
  --topic-events "$USAGE_MONITOR_TOPIC_EVENTS" >"$DEMO/provisioning-sim.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$RECEIVER_PORT/stats" "the webhook receiver"
wait_http http://127.0.0.1:6066/health usage_monitor
wait_http http://127.0.0.1:6067/health notifier

echo "demo: run $RUN; usage_monitor http://127.0.0.1:6066/cards/89860400000000000001 and /metrics"
echo "demo: notifier http://127.0.0.1:6067/metrics; webhook receiver http://127.0.0.1:$RECEIVER_PORT/stats"
echo "demo: simulated provisioning answers on $USAGE_MONITOR_TOPIC_COMMAND_RESULTS;" \
  "its counts in $DEMO/provisioning-sim.log"
.venv/bin/usage-monitor simulate --quiet --cards "${DEMO_CARDS:-2000}" --rate "${DEMO_RATE:-1000}" \
  --records "${DEMO_RECORDS:-0}" --webhook-url "http://127.0.0.1:$RECEIVER_PORT/hook" \
  --topic-usage "$USAGE_MONITOR_TOPIC_USAGE" --topic-events "$USAGE_MONITOR_TOPIC_EVENTS" \
  --topic-settings "$NOTIFIER_TOPIC_SETTINGS" --topic-pools "$USAGE_MONITOR_TOPIC_POOLS" \
  >"$DEMO/simulate.log" 2>&1 &
pids+=($!)
if [[ ${DEMO_SECONDS:-0} != 0 ]]; then
  timeout --foreground "$DEMO_SECONDS" .venv/bin/usage-monitor watch \
    --receiver "http://127.0.0.1:$RECEIVER_PORT/stats" || true
else
  .venv/bin/usage-monitor watch --receiver "http://127.0.0.1:$RECEIVER_PORT/stats"
fi
