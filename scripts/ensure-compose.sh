#!/usr/bin/env bash
# The compose tests (tests/unit/deploy/test_compose.py) check docker-compose.yml with the
# distribution's docker-compose, which parses and resolves the file without a Docker engine.
set -euo pipefail
if command -v docker-compose >/dev/null; then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "error: docker-compose is missing: apt-get install docker-compose" >&2
  exit 1
fi
echo "installing the distribution's docker-compose for the compose tests"
apt-get update -qq
# Without recommends: the compose CLI alone, no Docker engine.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
