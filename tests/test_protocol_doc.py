"""docs/protocol.md and ide_backend/protocol.py agree: every example there is a valid message here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from ide_backend.api.protocol import ClientMessage, ServerMessage, client_message, server_message

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
BLOCK = re.compile(r"```json (client|server)\n(.*?)\n```", re.S)
SESSION_LINE = re.compile(r"^([<>]) (\{.*\})$", re.M)


def _examples() -> list[tuple[str, str]]:
    text = DOC.read_text()
    found = [(side, body) for side, body in BLOCK.findall(text)]
    found += [("client" if arrow == ">" else "server", body) for arrow, body in SESSION_LINE.findall(text)]
    return found


def test_the_doc_has_examples_of_every_message_type() -> None:
    kinds = {(side, json.loads(body)["type"]) for side, body in _examples()}
    client_types = _types(ClientMessage)
    server_types = _types(ServerMessage)
    assert {t for side, t in kinds if side == "client"} == client_types
    assert {t for side, t in kinds if side == "server"} == server_types


@pytest.mark.parametrize(("side", "body"), _examples())
def test_example_matches_the_models(side: str, body: str) -> None:
    adapter = client_message if side == "client" else server_message
    parsed = adapter.validate_json(body)
    assert parsed.model_dump(by_alias=True, exclude_unset=True) == json.loads(body)


def _types(union: Any) -> set[str]:
    """Every `type` value of a discriminated union of message models."""
    members = get_args(get_args(union)[0])
    return {value for model in members for value in get_args(model.model_fields["type"].annotation)}
