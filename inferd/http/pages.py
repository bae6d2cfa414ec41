"""Plain GET pages outside the V2 API (/metrics, the dashboard), served by path.

A page is a function returning (content type, body); the composition root decides which exist, so the
front-end needs no knowledge of metrics or dashboards.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

# A page may be a coroutine function: with --workers, /metrics and the status page's data ask every
# worker for its part.
Page = Callable[[], tuple[bytes, bytes] | Awaitable[tuple[bytes, bytes]]]


async def render(page: Page) -> tuple[bytes, bytes]:
    result = page()
    return await result if inspect.isawaitable(result) else result


class PagesApp:
    """An ASGI app serving only pages: the separate --metrics-port listener."""

    def __init__(self, pages: Mapping[str, Page]) -> None:
        self._pages = pages

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        page = self._pages.get(scope["path"])
        if page is None or scope["method"] != "GET":
            status, content_type, body = 404, b"text/plain", b"not found\n"
        else:
            status = 200
            content_type, body = await render(page)
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
