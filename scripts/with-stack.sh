#!/usr/bin/env bash
# Run a command with local Kafka and Redis up. Starts them when they are not running and then
# stops them again afterwards; a stack that was already running is left running.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if "$here/stack.sh" status; then
  exec "$@"
fi
trap '"$here/stack.sh" down' EXIT
"$here/stack.sh" up
"$@"
