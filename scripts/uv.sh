#!/usr/bin/env bash
# Run uv wherever it was installed (PATH, ~/.local/bin, or as a module of python3).
set -euo pipefail
if command -v uv >/dev/null 2>&1; then exec uv "$@"; fi
if [ -x "$HOME/.local/bin/uv" ]; then exec "$HOME/.local/bin/uv" "$@"; fi
exec "$(command -v python3.11 || command -v python3)" -m uv "$@"
