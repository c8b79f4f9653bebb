#!/usr/bin/env bash
# The monitoring tests (tests/unit/deploy/test_alerts.py, tests/e2e/test_monitoring.py) run Debian's
# Prometheus and Alertmanager: promtool checks and unit-tests deploy/prometheus/rules.yml, amtool
# checks deploy/alertmanager/alertmanager.yml, and the e2e test scrapes the real services.
set -euo pipefail
missing=()
for tool in prometheus promtool; do
  command -v "$tool" >/dev/null || { missing+=(prometheus); break; }
done
for tool in prometheus-alertmanager amtool; do
  command -v "$tool" >/dev/null || { missing+=(prometheus-alertmanager); break; }
done
if [[ ${#missing[@]} -eq 0 ]]; then exit 0; fi
if [[ $(id -u) -ne 0 ]]; then
  echo "error: ${missing[*]} missing: apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian's ${missing[*]} for the monitoring tests"
apt-get update -qq
# Without recommends (node-exporter); the tests start their own processes on private ports.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
