#!/usr/bin/env bash
# Writes the PrometheusRule of deploy/k8s/components/prometheus-operator from
# deploy/prometheus/rules.yml, the one copy of the alert rules: kustomize cannot wrap a file in
# an object, and Prometheus refuses a rules file with the object's fields.
set -euo pipefail
cd "$(dirname "$0")/.."
out=deploy/k8s/components/prometheus-operator/prometheusrule.yaml
{
  cat <<'HEAD'
# Generated from deploy/prometheus/rules.yml (the one copy to edit): its text indented under
# `spec`. tests/unit/deploy/test_manifests.py fails when the two differ; regenerate with
#   scripts/prometheus-rule.sh
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: codexpool
  labels: {app.kubernetes.io/part-of: codexpool}
spec:
HEAD
  sed -e 's/^\(..*\)$/  \1/' deploy/prometheus/rules.yml
} >"$out"
