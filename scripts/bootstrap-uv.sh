#!/usr/bin/env bash
# Installs the pinned uv into a project-local virtual environment (.tools/uv), never into the
# system Python: Debian 12+ and Ubuntu 24.04 mark theirs externally managed (PEP 668), and pip
# refuses to install there. What must be there first: make, python3 (>= 3.11) and its venv
# module (Debian and Ubuntu ship it apart, as python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$1
tools=.tools/uv

if [[ -x $tools/bin/uv && "$("$tools/bin/uv" --version)" == "uv $version "* ]]; then
  exit 0
fi
if ! command -v python3 >/dev/null; then
  echo "error: python3 is missing: install Python 3.11 or newer (Debian/Ubuntu: apt-get install python3 python3-venv)" >&2
  exit 1
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: $(python3 --version) is too old: Codex Pool needs Python 3.11 or newer" >&2
  exit 1
fi
if ! python3 -m venv --clear "$tools" >/dev/null 2>&1; then
  rm -rf "$tools"
  echo "error: python3 -m venv failed: install the venv module (Debian/Ubuntu: apt-get install python3-venv)" >&2
  exit 1
fi
echo "installing uv $version into $tools"
"$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$version"
