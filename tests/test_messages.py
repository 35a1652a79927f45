"""The messages the server builds (typed dicts in production) and the pydantic models the documentation and the
clients read describe the same JSON: same types, same keys."""

from __future__ import annotations

from typing import Any, get_args, get_type_hints

from pydantic import BaseModel

from ide_backend.api import protocol
from ide_backend.service import messages

PAIRS: list[tuple[Any, type[BaseModel]]] = [
    (messages.StartedMessage, protocol.StartedMessage),
    (messages.OutputMessage, protocol.OutputMessage),
    (messages.ExitMessage, protocol.ExitMessage),
    (messages.ScreenMessage, protocol.ScreenMessage),
    (messages.AttachedMessage, protocol.AttachedMessage),
    (messages.ErrorMessage, protocol.ErrorMessage),
    (messages.StatusMessage, protocol.StatusMessage),
    (protocol.Pong, protocol.PongMessage),
    (protocol.Subscribed, protocol.SubscribedMessage),
    (messages.ProcessesMessage, protocol.ProcessesMessage),
    (messages.ProcessItem, protocol.ProcessItemModel),
]


def _aliases(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_typed_dicts_and_models_have_the_same_keys() -> None:
    for typed, model in PAIRS:
        assert set(get_type_hints(typed)) == _aliases(model), (typed.__name__, model.__name__)


def test_the_same_types_and_statuses() -> None:
    for typed, model in PAIRS:
        if "type" not in model.model_fields:
            continue  # an item inside a message
        sent = set(get_args(get_type_hints(typed)["type"]))
        assert sent == set(get_args(model.model_fields["type"].annotation)), typed.__name__
    statuses = set(get_args(messages.Status))
    assert statuses == set(get_args(protocol.StatusMessage.model_fields["status"].annotation))


def test_built_messages_validate_against_the_models() -> None:
    error = messages.error_message("conflict", "busy", "p1")
    assert protocol.server_message.validate_python(error).type == "error"
    assert protocol.server_message.validate_python({"type": "pong"}).type == "pong"
