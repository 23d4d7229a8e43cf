#!/usr/bin/env bash
# Type-checks and tests the Python SDK against a real eva-hub binary.
#
#   ./run-tests.sh [pytest args...]
#
# Creates clients/python/.venv when missing (or when pyproject.toml changed
# since it was filled) with `pip install -e '.[test]'`, then runs
# `mypy --strict` and pytest. The hub binary is $EVA_HUB_BIN, or the
# workspace's own debug build (target/debug/eva-hub: `cargo build`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

python="${PYTHON:-python3}"
venv="$here/.venv"
stamp="$venv/.installed-from"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
if [[ ! -f "$stamp" ]] || ! cmp -s pyproject.toml "$stamp"; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e '.[test]'
    cp pyproject.toml "$stamp"
fi

echo "== mypy --strict"
"$venv/bin/python" -m mypy --strict

echo "== pytest"
exec "$venv/bin/python" -m pytest "$@"
