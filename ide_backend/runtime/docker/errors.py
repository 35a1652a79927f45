"""The one place where aiodocker's and aiohttp's errors become ours, naming what we were doing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp
from aiodocker.exceptions import DockerError

from ...errors import Conflict, IDEError, NotFound, RuntimeFailure, RuntimeUnavailable


def unavailable(doing: str, detail: str, host: str) -> RuntimeUnavailable:
    return RuntimeUnavailable(
        f"The Docker engine did not answer while {doing} ({detail}). Check that dockerd is running and "
        f"reachable at {host} (scripts/docker-engine.sh starts one), then retry.",
        hint="start the Docker engine or fix IDE_DOCKER_HOST",
    )


def missing_image(image: str) -> RuntimeUnavailable:
    return RuntimeUnavailable(
        f"The workspace image {image!r} is not on this Docker engine; build it with scripts/build-images.sh (or set "
        "IDE_WORKSPACE_IMAGE to an image that exists)",
        hint="build the workspace image",
    )


@contextlib.contextmanager
def translate_errors(doing: str, host: str) -> Iterator[None]:
    """404 -> NotFound, 409 -> Conflict, no answer -> RuntimeUnavailable (503), the rest -> RuntimeFailure."""
    try:
        yield
    except IDEError:
        raise
    except DockerError as exc:
        message = str(exc.message).strip() or "no details given"
        if exc.status == 404:
            raise NotFound(f"Docker could not find it while {doing}: {message}") from exc
        if exc.status == 409:
            raise Conflict(f"Docker refused while {doing}: {message}") from exc
        if "cannot overwrite" in message:
            raise Conflict(f"A file and a folder are in each other's way while {doing}: {message}") from exc
        if exc.status == 900 or exc.status >= 502:
            raise unavailable(doing, message, host) from exc
        raise RuntimeFailure(f"Docker failed while {doing}: {message}") from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise unavailable(doing, str(exc) or type(exc).__name__, host) from exc
