"""``--token``: every route but ``/healthz`` needs ``Authorization: Bearer <token>``, compared in constant
time. The page cannot send a header when a browser opens it, so ``GET /?token=<token>`` (the link
``tracedagent serve`` prints) also lets it in and sets the token as an ``HttpOnly``, ``SameSite=Strict``
cookie, which the page's own requests then carry."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

__all__ = ["COOKIE", "BearerAuth"]

COOKIE = "tracedagent_token"
OPEN_PATHS = frozenset({"/healthz"})

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class BearerAuth:
    """An ASGI middleware: 401 without the right token (except on ``/healthz``)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = token.encode()

    def _matches(self, given: str | None) -> bool:
        # compare_digest takes as long whatever the given token is (it may leak the length, not the text).
        return given is not None and hmac.compare_digest(given.encode(), self.expected)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if self._matches(given.strip() if scheme.lower() == "bearer" else None):
            await self.app(scope, receive, send)
            return
        if self._matches(_cookie(headers.get("cookie", ""), COOKIE)):
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/" and scope["method"] == "GET":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            if self._matches((query.get("token") or [None])[0]):
                await self.app(scope, receive, self._setting_cookie(send))
                return
        await _unauthorized(send, bool(given or "authorization" in headers))

    def _setting_cookie(self, send: Any) -> Any:
        cookie = f"{COOKIE}={self.expected.decode()}; HttpOnly; SameSite=Strict; Path=/".encode()

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        return sending


async def _unauthorized(send: Any, given: bool) -> None:
    message = "the bearer token is wrong" if given else "this server needs a token: send Authorization: Bearer <token>"
    body = json.dumps({"error": {"type": "unauthorized", "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"www-authenticate", b'Bearer realm="tracedagent"'),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
