#!/usr/bin/env bash
# Makes sure Redis and RabbitMQ answer on their local ports: start the Debian-packaged servers
# when installed and stopped; install them when missing and we are root; otherwise say what to do.
# A REDIS_URL / AMQP_URL in the environment means "use those": nothing is started then.
set -euo pipefail

answers() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_for() {
  local port=$1 name=$2 deadline=$((SECONDS + $3))
  until answers "$port"; do
    if ((SECONDS > deadline)); then
      echo "error: $name did not come up on 127.0.0.1:$port" >&2
      exit 1
    fi
    sleep 1
  done
}

apt_updated=0
install_pkg() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "error: $1 is not installed and we are not root: apt-get install $1 (or set REDIS_URL/AMQP_URL)" >&2
    exit 1
  fi
  if ((apt_updated == 0)); then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

if [[ -z "${REDIS_URL:-}" ]] && ! answers 6379; then
  command -v redis-server >/dev/null || install_pkg redis-server
  echo "starting redis-server"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --logfile /tmp/codexpool-redis.log
  wait_for 6379 Redis 20
fi

if [[ -z "${AMQP_URL:-}" ]] && ! answers 5672; then
  command -v rabbitmq-server >/dev/null || install_pkg rabbitmq-server
  echo "starting rabbitmq-server"
  rabbitmq-server -detached
  wait_for 5672 RabbitMQ 90
fi
echo "redis and rabbitmq answer"
