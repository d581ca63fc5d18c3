"""The TypeScript client (clients/typescript) is generated from the schema the API serves now: the
committed openapi.json equals a fresh generation, and so does its types file (openapi-typescript,
when the package's node_modules are installed: `make test` installs them with npm ci). Stale →
run `make ts-client` and commit the result."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command

TS_DIR = Path(__file__).resolve().parents[2] / "clients" / "typescript"
HINT = "the TypeScript client is stale: run `make ts-client` and commit clients/typescript"


def test_committed_schema_is_the_served_schema(tmp_path):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the committed schema is generated against PostgreSQL (integer bounds depend on the backend)")
    fresh = tmp_path / "openapi.json"
    call_command("spectacular", format="openapi-json", file=str(fresh))
    assert fresh.read_text() == (TS_DIR / "openapi.json").read_text(), HINT


@pytest.mark.skipif(not (TS_DIR / "node_modules" / ".bin" / "openapi-typescript").exists() or not shutil.which("node"),
                    reason="clients/typescript/node_modules not installed (make ts-check installs it)")
def test_committed_types_are_generated_from_the_committed_schema(tmp_path):
    out = tmp_path / "schema.d.ts"
    subprocess.run([str(TS_DIR / "node_modules" / ".bin" / "openapi-typescript"), str(TS_DIR / "openapi.json"),
                    "-o", str(out)], check=True, capture_output=True, timeout=120, cwd=TS_DIR)
    assert out.read_text() == (TS_DIR / "src" / "schema.d.ts").read_text(), HINT


def test_error_component_and_arrays_reach_the_types():
    types = (TS_DIR / "src" / "schema.d.ts").read_text()
    assert "ErrorBody: {" in types and 'components["schemas"]["Error"]' in types
    presets = types.split('"/api/v1/presets/": {', 1)[1]
    assert "PaginatedPresetList" not in types and "Preset" in presets
