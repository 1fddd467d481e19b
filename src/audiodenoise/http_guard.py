"""Who may talk to the server: known Host names only (against DNS rebinding), no cross-site requests that
change state unless their origin is allowed, and headers that forbid sniffing and framing on every answer."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
NO_FRAMING = "frame-ancestors 'none'"  # the policy of responses that set none of their own


@dataclass(frozen=True)
class Access:
    bound_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()  # names besides the bound address and this machine's own
    cors_origins: tuple[str, ...] = ()  # other sites' origins that may POST, e.g. "https://app.example.org"

    def host_allowed(self, host: str) -> bool:
        names = {name.lower() for name in (*LOCAL_HOSTS, self.bound_host, *self.allowed_hosts)}
        if host in names:
            return True
        # Listening on every address: an address typed as such cannot be rebound by DNS.
        return self.bound_host in WILDCARD_HOSTS and _is_address(host)


def host_name(header: str) -> str:
    """``example.org`` of ``Example.org:8000``, ``::1`` of ``[::1]:8000``."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class GuardMiddleware:
    """ASGI middleware: refuses unknown Host names (421) and cross-origin state changes (403) as one line of
    JSON, and adds ``X-Content-Type-Options: nosniff`` and ``frame-ancestors 'none'`` to every response."""

    def __init__(self, app, access: Access):
        self.app = app
        self.access = access

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        host_header = headers.get("host", "")
        host = host_name(host_header)
        if not self.access.host_allowed(host):
            return await _refuse(send, 421, f"this server does not answer to the host name {host!r}")
        origin = headers.get("origin")
        if scope["method"] not in SAFE_METHODS and origin and not self._origin_allowed(origin, host_header):
            return await _refuse(send, 403, f"cross-origin request from {origin!r} refused")
        await self.app(scope, receive, _with_security_headers(send))

    def _origin_allowed(self, origin: str, host_header: str) -> bool:
        own = urlsplit(origin).netloc.lower() == host_header.strip().lower()
        return own or origin in self.access.cors_origins


def _with_security_headers(send):
    async def send_secured(message):
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(key.lower() == b"content-security-policy" for key, _ in headers):
                headers.append((b"content-security-policy", NO_FRAMING.encode()))
            headers.append((b"x-content-type-options", b"nosniff"))
            message = {**message, "headers": headers}
        await send(message)

    return send_secured


async def _refuse(send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(b"connection", b"close")]
    await _with_security_headers(send)({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
