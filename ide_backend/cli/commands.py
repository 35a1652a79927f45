"""The client commands (start, stop, status, exec, sync, ls, rm, fork, templates, token, shell) over the SDK: each
takes the parsed arguments and a Client, prints a table (or with --json the server's answer) and returns an exit
code (output.py). exec's live output and the interactive shell are in live.py and shell.py."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ..api.models import ContainerInfo, StatusData
from ..client import Client, IDEClientError, UnauthorizedError
from . import live, output, shell
from .output import OK, emit_json, pairs, table

Command = Callable[[Client, argparse.Namespace], int]


def run(args: argparse.Namespace) -> int:
    """Run one client command against the server of --url/--token (IDE_URL/IDE_TOKEN); every SDK error becomes
    a message and its exit code."""
    as_json = bool(getattr(args, "json", False))
    try:
        with Client(args.url, args.token) as client:
            return COMMANDS[args.command](client, args)
    except IDEClientError as exc:
        hint = None
        if isinstance(exc, UnauthorizedError) and not (args.token or os.environ.get("IDE_TOKEN")):
            hint = "no token was given: set IDE_TOKEN or pass --token"
        return output.error(exc, as_json=as_json, hint=hint)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return output.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`ide-backend ls | head -1`): nothing more to say, and nothing to say it to.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return output.FAILED


def state(info: ContainerInfo) -> str:
    """`running`, or a stopped one's state with why it stopped: `exited (idle)`."""
    if info.running or not info.stop_reason:
        return info.status
    return f"{info.status} ({info.stop_reason})"


def workspace_rows(info: ContainerInfo) -> list[tuple[str, object]]:
    return [
        ("project", info.project_id),
        ("workspace", info.workspace_id),
        ("template", info.template),
        ("status", state(info)),
        ("container", info.id[:12] if info.id else None),
        ("image", info.image),
        ("ports", info.ports),
        ("ide url", info.ide_url),
        ("theme", info.theme),
        ("created", info.created_at),
        ("started", info.started_at),
        ("finished", None if info.running else info.finished_at),
        ("exit code", None if info.running else info.exit_code),
        ("oom killed", info.oom_killed or None),
        ("volume", info.volume),
    ]


def status_rows(info: StatusData) -> list[tuple[str, object]]:
    return [
        *workspace_rows(info),
        ("password", info.password),
        ("ide ready", info.ide_ready if info.ide_url else None),
        ("kept alive by", info.kept_alive_by),
        ("idle stop at", info.idle_stop_at),
    ]


def start(client: Client, args: argparse.Namespace) -> int:
    answer = client.workspace(args.project, args.workspace).start(template=args.template)
    if args.json:
        emit_json(answer)
    else:
        print(answer.message)
        pairs(workspace_rows(answer.data))
    return OK


def stop(client: Client, args: argparse.Namespace) -> int:
    answer = client.workspace(args.project, args.workspace).stop()
    if args.json:
        emit_json(answer)
    else:
        print(answer.message)
        pairs(workspace_rows(answer.data))
    return OK


def status(client: Client, args: argparse.Namespace) -> int:
    answer = client.workspace(args.project, args.workspace).status()
    if args.json:
        emit_json(answer)
    else:
        pairs(status_rows(answer.data))
    return OK


def exec_(client: Client, args: argparse.Namespace) -> int:
    """With --json the REST call (the whole answer once it has ended); otherwise the live channel, so output shows
    as it is written, stdin can be passed (-i) and Ctrl-C reaches the command."""
    command = live.command_text(args.argv)
    env = live.environment(args.env)
    if not args.json:
        return live.exec_streaming(client, args, command, env)
    answer = client.workspace(args.project, args.workspace).exec(command, cwd=args.cwd, env=env, timeout=args.timeout)
    emit_json(answer)
    return output.command_exit(answer.exit_code, answer.timed_out)


def sync(client: Client, args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    ignore: list[str] = list(args.ignore)
    if not args.no_ignore:
        gitignore = folder / ".gitignore"
        ignore = [".git/", *(gitignore.read_text().splitlines() if gitignore.is_file() else []), *ignore]
    result = client.workspace(args.project, args.workspace).sync_dir(
        folder, ignore, dest=args.dest or "", clean=args.clean
    )
    if args.json:
        emit_json(asdict(result))
    else:
        pairs(
            [
                ("files", result.files),
                ("folders", result.folders),
                ("bytes", result.bytes),
                ("requests", result.requests),
                ("skipped", result.skipped),
            ]
        )
    return OK


def ls(client: Client, args: argparse.Namespace) -> int:
    infos = list(client.list(project_id=args.project, status=args.status))
    if args.json:
        emit_json(infos)
        return OK
    headers = ["PROJECT", "WORKSPACE", "TEMPLATE", "STATUS", "PORTS", "STARTED"]
    table(headers, [(i.project_id, i.workspace_id, i.template, state(i), i.ports, i.started_at) for i in infos])
    return OK


def rm(client: Client, args: argparse.Namespace) -> int:
    answer = client.workspace(args.project, args.workspace).delete()
    if args.json:
        emit_json(answer)
    else:
        print(f"{answer.message}: {args.project}/{args.workspace}")
    return OK


def fork(client: Client, args: argparse.Namespace) -> int:
    source = client.workspace(args.project, args.workspace)
    answer = source.fork(args.to_workspace, to_project_id=args.to_project)
    if args.json:
        emit_json(answer)
    else:
        print(answer.message)
        pairs([*workspace_rows(answer.data), ("copy ms", answer.copy_ms), ("paused ms", answer.paused_ms)])
    return OK


def templates(client: Client, args: argparse.Namespace) -> int:
    answer = client.templates()
    if args.json:
        emit_json(answer)
        return OK
    rows = [
        (
            f"{t.name}{' *' if t.name == answer.default else ''}",
            t.image,
            f"{t.memory_mb} MB",
            t.cpus,
            f"{t.disk_mb} MB" if t.disk_mb else None,
            t.ports,
            f"{t.idle_timeout:g} s" if t.idle_timeout else "never",
            t.pool_size,
            t.description,
        )
        for t in answer.data
    ]
    table(["NAME", "IMAGE", "MEMORY", "CPUS", "DISK", "PORTS", "IDLE STOP", "POOL", "DESCRIPTION"], rows)
    return OK


def token(client: Client, args: argparse.Namespace) -> int:
    if args.revoke:
        revoked = client.revoke_tokens(args.project, args.workspace)
        if args.json:
            emit_json(revoked)
        else:
            print(revoked.message)
            pairs([("revoked at", revoked.revoked_at)])
        return OK
    scopes = ["read"] if args.read_only else None
    answer = client.mint_token(args.project, args.workspace, ttl_seconds=args.ttl, scopes=scopes)
    if args.json:
        emit_json(answer)
    elif args.quiet:
        print(answer.token)
    else:
        rows: list[tuple[str, object]] = [("token", answer.token), ("expires at", answer.expires_at)]
        rows.append(("project", answer.project_id))
        rows += [("workspace", answer.workspace_id or "(every workspace)"), ("scopes", answer.scopes)]
        pairs(rows)
    return OK


def shell_(client: Client, args: argparse.Namespace) -> int:
    return shell.run(client, args, live.command_text(args.argv) if args.argv else shell.DEFAULT_COMMAND)


COMMANDS: dict[str, Command] = {
    "start": start,
    "stop": stop,
    "status": status,
    "exec": exec_,
    "sync": sync,
    "ls": ls,
    "rm": rm,
    "fork": fork,
    "templates": templates,
    "token": token,
    "shell": shell_,
}
