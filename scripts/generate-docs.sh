#!/usr/bin/env bash
# Writes docs/crds.md and docs/admin-api.md again from crds/ and the admin API's OpenAPI
# document (tests/unit/test_reference_docs.py fails when they drift).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${VENV:-.venv}/bin/python" -m tests.support.reference_docs write
