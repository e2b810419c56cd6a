"""Dependencies shared by the routers: the app's services and the caller's identity.

They are ``async def`` although they do not await: FastAPI runs a plain ``def`` dependency in its thread
pool, a thread hop per dependency per request for what is an attribute lookup (and one ``stat``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chat_service.engine import ChatEngine
from chat_service.services import ChatServices

# auto_error=False: our own 401 body; the scheme still shows an "Authorize" button in /docs.
_bearer = HTTPBearer(auto_error=False, description="A token from the tokens file (AI_OPS_AUTH_TOKENS_FILE).")

# A caller's own thread id, or an Investigation's (``investigations:<name>``, shared: see conversations.py).
THREAD_ID_PATTERN = r"^(investigations:)?[A-Za-z0-9._-]{1,128}$"
# The name of an Investigation or ActionRequest in a route's path (a DNS label).
NamePath = Path(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)


def _services(request: Request) -> ChatServices:
    found: ChatServices = request.app.state.services
    return found


async def services(request: Request) -> ChatServices:
    return _services(request)


async def engine(request: Request) -> ChatEngine:
    return _services(request).engine


async def caller(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The caller's identity: the token's name (``anonymous`` when auth is off); 401 otherwise."""
    return _services(request).auth.identify(request.headers.get("authorization"))


Caller = Annotated[str, Depends(caller)]
Engine = Annotated[ChatEngine, Depends(engine)]
Services = Annotated[ChatServices, Depends(services)]
