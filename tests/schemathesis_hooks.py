"""schemathesis hooks for tests/test_schemathesis.py (loaded by path through SCHEMATHESIS_HOOKS).

The OpenAPI document states every rule the server applies to one value, but JSON Schema cannot relate one value to
another, so three rules are in its words only:
  - `files` (start, sync): no two entries name the same file, or a file and a folder it would be in
    ({"a": "x", "a/b": "y"}), 400;
  - `files`: a path inside a `directory` tree counts from the top: at most MAX_PATH_CHARS characters and MAX_DEPTH
    names, 400;
  - fork: the new workspace is not the source (toProjectId, or else projectId, and toWorkspaceId), 422.
schemathesis's positive_data_acceptance would report such a refusal as a valid request refused. So a body the
document allows but these rules refuse is not generated; nothing else is left out, and negative cases (invalid on
purpose) are sent as they come.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from ide_backend.service.filesets import MAX_DEPTH, MAX_PATH_CHARS


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: schemathesis.Case[Any]) -> bool:
    """Keep every case but a positive one that breaks a rule the document cannot state."""
    body = case.body
    if case.meta is None or not case.meta.generation.mode.is_positive or not isinstance(body, dict):
        return True
    if case.path.endswith("/fork"):
        target = (body.get("toProjectId") or body.get("projectId"), body.get("toWorkspaceId"))
        return target != (body.get("projectId"), body.get("workspaceId"))
    files = body.get("files")
    return not isinstance(files, dict) or files_are_consistent(files)


def files_are_consistent(files: dict[str, Any]) -> bool:
    """Whether no two entries clash and every path in a tree is within the limits (the rules above, written
    apart from the service's filesets module, so the test does not take the server's word for what it refuses)."""
    kinds: dict[tuple[str, ...], str] = {}  # each entry's names, without empty and "." parts: "file" or "dir"
    pending: list[tuple[tuple[str, ...], str, object]] = [((), key, value) for key, value in files.items()]
    while pending:
        parent, key, value = pending.pop()
        names = (*parent, *(part for part in key.split("/") if part not in ("", ".")))
        if len("/".join([*parent, key])) > MAX_PATH_CHARS or len(names) > MAX_DEPTH:
            return False
        tree = value.get("directory") if isinstance(value, dict) and len(value) == 1 else None
        kind = "dir" if isinstance(tree, dict) else "file"
        if "file" in (kind, kinds.get(names, "dir")) and names in kinds:
            return False  # the same file twice, or a file and a folder at one path
        kinds[names] = kind
        if isinstance(tree, dict):
            pending += [(names, name, item) for name, item in tree.items()]
    files_at = {names for names, kind in kinds.items() if kind == "file"}
    return not any(names[:depth] in files_at for names in kinds for depth in range(1, len(names)))
