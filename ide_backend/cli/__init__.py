"""The command line: `ide-backend serve` runs the API server; the other commands drive a server through the SDK
(`ide-backend ls`, `exec`, `shell`, ...). This module parses the arguments and hands over; the commands are in
commands.py (tables and --json in output.py, exec's live output in live.py, the interactive terminal in shell.py)
and the server in serve.py. Each side is imported only when used: a client command never loads the server, and
`serve` needs neither httpx nor websockets.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..version import __version__

EXIT_CODES = """\
exit codes (client commands):
  0 done, 1 any other failure, 2 usage (bad arguments; the server answered 400 or 422),
  3 not found (404), 4 conflict (409: not running, target exists, file changed),
  5 credential (401, 403, 429), 6 unavailable (server unreachable, or 503), 130 interrupted.
  exec and shell end with the command's own exit code once it ran (124: its --timeout ran out).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ide-backend",
        description="Workspace containers for a browser IDE: run the server, or drive one.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ide-backend {__version__}")
    parser.set_defaults(url=None, token=None, json=False)
    _server_options(parser, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the API server (settings also from IDE_* variables)")
    serve.add_argument("--host", help="address to listen on (IDE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (IDE_PORT, default 8000)")
    serve.add_argument("--database-url", help="sqlite:///file or postgresql://... (IDE_DATABASE_URL)")
    serve.add_argument("--workspace-image", help="image for workspace containers (IDE_WORKSPACE_IMAGE)")
    serve.add_argument("--data-dir", help="where the default SQLite file lives (IDE_DATA_DIR)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    def client_command(name: str, help: str, *, json: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, epilog=EXIT_CODES)
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        _server_options(sub, argparse.SUPPRESS, json=json)
        return sub

    def workspace_command(name: str, help: str, *, json: bool = True) -> argparse.ArgumentParser:
        sub = client_command(name, help, json=json)
        sub.add_argument("project", metavar="PROJECT")
        sub.add_argument("workspace", metavar="WORKSPACE")
        return sub

    start = workspace_command("start", "start a workspace (made on its first start)")
    start.add_argument("-t", "--template", help="the template to make it from (`templates` lists them)")
    workspace_command("stop", "stop a workspace (its files stay)")
    workspace_command("status", "a workspace's state, ports, IDE password and what keeps it alive")

    exec_ = workspace_command("exec", "run a command in a running workspace; ends with its exit code")
    _process_options(exec_)
    exec_.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="seconds; then every process it started is killed (124)"
    )
    exec_.add_argument("-i", "--interactive", action="store_true", help="pass this process's stdin to it")
    exec_.add_argument(
        "argv", nargs=argparse.REMAINDER, metavar="COMMAND", help="sh -c COMMAND; several words are quoted each"
    )

    sync = workspace_command("sync", "upload a local folder into a workspace")
    sync.add_argument("dir", metavar="DIR")
    sync.add_argument("--dest", help="a workspace folder to put it in (default: the workspace's root)")
    sync.add_argument("--clean", action="store_true", help="empty the workspace first")
    sync.add_argument(
        "--ignore", action="append", default=[], metavar="PATTERN", help="a .gitignore-style pattern (repeatable)"
    )
    sync.add_argument("--no-ignore", action="store_true", help="send .git/ and what DIR/.gitignore leaves out")

    ls = client_command("ls", "list workspaces (of one project)")
    ls.add_argument("project", metavar="PROJECT", nargs="?")
    ls.add_argument("--status", help="only those in this state (running, exited, removed, ...)")

    workspace_command("rm", "delete a workspace: processes, container, files, record")
    fork = workspace_command("fork", "copy a workspace's files, template and theme into a new one")
    fork.add_argument("to_workspace", metavar="NEW_WORKSPACE")
    fork.add_argument("--to-project", help="the new workspace's project (default: the same)")
    client_command("templates", "the templates a workspace can be made from (* the default)")

    token = client_command("token", "mint a token for a project or one workspace (the operator's token only)")
    token.add_argument("project", metavar="PROJECT")
    token.add_argument("workspace", metavar="WORKSPACE", nargs="?")
    token.add_argument("--ttl", type=int, default=3600, metavar="SECONDS", help="seconds it is good for (default 3600)")
    token.add_argument("--read-only", action="store_true", help="status, files and attach only")
    token.add_argument("-q", "--quiet", action="store_true", help="print the token alone")
    token.add_argument("--revoke", action="store_true", help="void every token of the project (or workspace)")

    shell = workspace_command("shell", "an interactive terminal in a running workspace", json=False)
    _process_options(shell)
    shell.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND", help="default: bash -l")
    return parser


def _server_options(parser: argparse.ArgumentParser, default: str | None, *, json: bool = True) -> None:
    """--url and --token (and --json), taken before or after the command's name."""
    group = parser.add_argument_group("server")
    group.add_argument("--url", default=default, help="the server (IDE_URL; default http://127.0.0.1:8000)")
    group.add_argument("--token", default=default, help="its API token (IDE_TOKEN)")
    if json:
        group.add_argument("--json", action="store_true", default=default, help="print JSON (for scripts)")


def _process_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cwd", metavar="DIR", help="the folder to run in, relative to the workspace (default: its root)"
    )
    parser.add_argument(
        "-e", "--env", action="append", metavar="NAME[=VALUE]", help="an environment variable (repeatable)"
    )
    parser.add_argument(
        "--reconnect-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds to try when the connection drops (60)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from .serve import run as serve

        return serve(args)
    try:
        from .commands import run
    except ImportError as exc:
        if exc.name not in ("httpx", "websockets"):
            raise
        print(f"ide-backend: `{args.command}` needs {exc.name}: pip install 'ide-backend[client]'", file=sys.stderr)
        return 1
    return run(args)
