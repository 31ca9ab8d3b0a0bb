#!/usr/bin/env bash
# Debian packages the tests and the demo need beyond Python: redis-server (the local Redis
# and Redis Cluster), prometheus (promtool checks the alert rules; a real server scrapes the
# services in the end-to-end test). Installs only what is missing; a no-op afterwards.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v promtool >/dev/null || need+=(prometheus)
((${#need[@]})) || exit 0
echo "system-deps: installing Debian's ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: run as root, or install ${need[*]} yourself (apt-get install ${need[*]})" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
