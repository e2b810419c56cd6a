"""The web chat page: ``GET /`` and its assets under ``/static/``, from the package's ``static/`` folder.

The page and its assets hold no data, so they are served without auth (a browser cannot send a bearer
token when it navigates); the page asks for a token itself when the API answers 401. Only the files listed
in ``ASSET_NAMES`` are served, by exact name, so no path can reach anything else. The script is a tree of
native ES modules (``app.js`` imports the others); the strict Content-Security-Policy allows only our own
scripts (modules included) and styles and connections to this origin.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response

STATIC_DIR = Path(__file__).resolve().parent / "static"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate every time (cheap, with ETag) so an upgraded service never runs a stale script.
    "Cache-Control": "no-cache",
}
_PAGE_HEADERS = {
    **_COMMON_HEADERS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
}


# The ES modules of the page: app.js is the entry, the others are what it imports (directly or not).
# Listed rather than found in the folder, so that nothing else that lands in static/ is ever served;
# tests/chat/test_web_page.py checks that this list is exactly the module graph of app.js.
MODULE_NAMES = (
    "app.js",
    "approvals.js",
    "api.js",
    "chat.js",
    "citations.js",
    "composer.js",
    "elements.js",
    "errors.js",
    "format.js",
    "hints.js",
    "incidents.js",
    "markdown.js",
    "models.js",
    "notices.js",
    "plan.js",
    "render.js",
    "service.js",
    "sidebar.js",
    "status.js",
    "storage.js",
    "stream.js",
    "thread.js",
    "token.js",
    "usage.js",
)
# Third-party modules, as published (static/vendor/README.md names package, version and licence).
VENDOR_MODULES = ("vendor/marked.esm.js", "vendor/purify.es.mjs")
ASSET_NAMES = (*MODULE_NAMES, *VENDOR_MODULES, "app.css", "favicon.svg")


def _asset_names() -> frozenset[str]:
    """The servable assets: the listed files that are installed (a missing one is a 404, not an error)."""
    return frozenset(name for name in ASSET_NAMES if (STATIC_DIR / name).is_file())


ASSETS = _asset_names()

router = APIRouter(include_in_schema=False)


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "not_found", "message": f"{what} not found"}}, status_code=404)


@router.get("/")
async def chat_page() -> Response:
    """The chat page."""
    page = STATIC_DIR / "index.html"
    if not page.is_file():
        return _not_found("the chat page (chat_service/web/static/index.html is not installed)")
    return FileResponse(page, media_type=_MEDIA_TYPES[".html"], headers=_PAGE_HEADERS)


@router.get("/static/{name:path}")
async def static_asset(name: str) -> Response:
    """One asset of the page, by exact name (``vendor/`` ones included); nothing else under static/."""
    if name not in ASSETS:
        return _not_found(f"static file {name!r}")
    path = STATIC_DIR / name
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_COMMON_HEADERS)
