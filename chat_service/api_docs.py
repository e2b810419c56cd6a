"""``/docs`` (Swagger UI) and ``/redoc``: the API docs, self-hosted under a strict Content-Security-Policy.

The pages are open and share the origin (so the localStorage) of the chat page, which keeps the caller's
token: they load no script from a CDN and run no inline script. The Swagger UI and ReDoc bundles come from
the ``fastapi-offline`` package (installed with the service, pinned); only the files named in ``ASSETS``
are served. Swagger UI's start-up code is our own small script, not an inline one.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
ASSETS_PREFIX = "/docs/assets/"

# ReDoc (styled-components) writes <style> elements and runs its search in a blob: worker; Swagger UI
# needs neither. Scripts come from this origin only, either way.
_BASE_POLICY = (
    "default-src 'none'; script-src 'self'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SWAGGER_POLICY = f"{_BASE_POLICY}; style-src 'self'"
REDOC_POLICY = f"{_BASE_POLICY}; style-src 'self' 'unsafe-inline'; worker-src blob:"
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}

# Relative URLs: the pages also work behind a proxy that serves the service under a path prefix.
SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ai-ops chat - API</title>
<link rel="icon" href="docs/assets/favicon.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/swagger-init.js"></script>
</body>
</html>
"""

# persistAuthorization stays off: a token typed into "Authorize" is not written to localStorage.
SWAGGER_INIT = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
  deepLinking: true,
  persistAuthorization: false,
});
"""

REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ai-ops chat - API</title>
<link rel="icon" href="docs/assets/favicon.png">
</head>
<body>
<redoc spec-url="openapi.json"></redoc>
<script src="docs/assets/redoc.standalone.js"></script>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui() -> Response:
    return HTMLResponse(SWAGGER_PAGE, headers={**_HEADERS, "Content-Security-Policy": SWAGGER_POLICY})


@router.get("/redoc")
async def redoc() -> Response:
    return HTMLResponse(REDOC_PAGE, headers={**_HEADERS, "Content-Security-Policy": REDOC_POLICY})


@router.get(ASSETS_PREFIX + "swagger-init.js")
async def swagger_init() -> Response:
    return Response(SWAGGER_INIT, media_type="text/javascript; charset=utf-8", headers=_HEADERS)


@router.get(ASSETS_PREFIX + "{name}")
async def asset(name: str) -> Response:
    """One file of the docs bundles, by exact name."""
    if name not in ASSETS or not (ASSETS_DIR / name).is_file():
        return JSONResponse(
            {"error": {"code": "not_found", "message": f"{name!r} not found"}}, status_code=404
        )
    return FileResponse(ASSETS_DIR / name, media_type=ASSETS[name], headers=_HEADERS)
