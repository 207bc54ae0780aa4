#!/usr/bin/env bash
# Install uv (the Python package manager that reads uv.lock) from PyPI.
set -euo pipefail
if command -v uv >/dev/null 2>&1; then exit 0; fi
py=$(command -v python3.11 || command -v python3)
if ! "$py" -m pip --version >/dev/null 2>&1; then
  bash "$(dirname "$0")/apt-ensure.sh" python3-pip
fi
"$py" -m pip install --user -q uv 2>/dev/null \
  || "$py" -m pip install -q uv 2>/dev/null \
  || "$py" -m pip install --user -q --break-system-packages uv
