"""The published OpenAPI document, and schemathesis fuzzing the live server against it: no 5xx, no answer that
breaks the schema."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ide_backend.api import models

from .harness import Server, remove_instance
from .helpers import TOKEN, start_server


def test_openapi_lists_every_endpoint_with_its_models(server_without_engine: Server) -> None:
    spec = httpx.get(f"{server_without_engine.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for name in ("start", "stop", "status", "exec", "sync", "vscode-theme", "files/list", "files/read", "files/delete"):
        operation = paths[f"/api/v1/containers/{name}"]["post"]
        assert {"200", "400", "401", "404", "422", "503"} <= set(operation["responses"])
    schemas = spec["components"]["schemas"]
    assert schemas["WorkspaceRef"]["properties"]["projectId"]["pattern"] == models.ID_PATTERN
    assert set(schemas["ExecRequest"]["required"]) == {"projectId", "workspaceId", "command"}


@pytest.mark.docker
def test_schemathesis_finds_no_server_error_or_schema_violation(tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists() and shutil.which("schemathesis") is None:
        pytest.fail("schemathesis is not installed: scripts/setup.sh --test installs the test extras")
    srv = start_server(tmp_path, IDE_AUTH_FAILURE_LIMIT="1000000")
    try:
        result = subprocess.run(
            [
                str(cli),
                "run",
                f"{srv.url}/openapi.json",
                "-H",
                f"Authorization: Bearer {TOKEN}",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                "15",
                "--seed",
                "20261128",
                "--workers",
                "2",
                "--max-time",
                "75",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        report = result.stdout[-4000:] + result.stderr[-2000:]
        assert result.returncode == 0, report
        assert " passed" in result.stdout and "failed" not in result.stdout.split("SUMMARY")[-1], report
        assert " 500 " not in srv.log()
    finally:
        srv.stop()
        remove_instance(srv.instance)
