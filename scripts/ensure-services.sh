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

# A broker can accept TCP and still never answer the AMQP handshake (seen when a node stalls):
# send the protocol header and expect Connection.Start (a method frame, type 1) back.
amqp_answers() {
  timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672; printf "AMQP\x00\x00\x09\x01" >&3;
    [[ $(head -c 1 <&3 | od -An -tx1 | tr -d " ") == 01 ]]' 2>/dev/null
}

restart_local_rabbitmq() {
  echo "warning: RabbitMQ accepts connections but does not answer AMQP: restarting the local node" >&2
  pkill -9 -u rabbitmq beam.smp 2>/dev/null || true
  sleep 2
  rabbitmq-server -detached
  wait_for 5672 RabbitMQ 90
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

if [[ -z "${AMQP_URL:-}" ]] && ! amqp_answers; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "error: RabbitMQ on 127.0.0.1:5672 does not answer the AMQP handshake; restart it" >&2
    exit 1
  fi
  restart_local_rabbitmq
  for _ in $(seq 1 30); do amqp_answers && break; sleep 2; done
  amqp_answers || { echo "error: RabbitMQ still does not answer AMQP" >&2; exit 1; }
fi
echo "redis and rabbitmq answer"
