// The client of the service's HTTP API. Paths are relative, so a path prefix in front of the service
// (an ingress at /ai-ops/) works. Every request carries the saved access token, if any.

import { load, save } from "./storage.js";

const TOKEN_KEY = "ai-ops.token";

/** An HTTP failure turned into something a person can read. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status; // 0 = the service could not be reached at all
    this.code = code;
  }
}

export function savedToken() {
  return load(TOKEN_KEY);
}

/** Saves the token sent as `Authorization: Bearer`; null forgets it. */
export function saveToken(token) {
  save(TOKEN_KEY, token);
}

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  const token = savedToken();
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

async function errorFromResponse(response) {
  let code = "http_" + response.status;
  let message = response.statusText || "";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    } else if (body && body.detail) {
      message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch {
    /* not JSON (a proxy's error page): keep the status text */
  }
  return new ApiError(response.status, code, message);
}

/** fetch with the token; an HTTP error or no connection becomes an ApiError (an abort stays an AbortError). */
export async function request(path, options) {
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers: headers(options && options.headers) }));
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "network", String(err && err.message ? err.message : err));
  }
  if (!response.ok) throw await errorFromResponse(response);
  return response;
}

export async function getJson(path) {
  const response = await request(path, { method: "GET" });
  return response.json();
}

/** The HTTP status an `error` event's code stands for (the stream itself was already 200). */
export function statusForCode(code) {
  return (
    {
      invalid_request: 422,
      unauthorized: 401,
      model_not_found: 404,
      thread_not_found: 404,
      content_blocked: 422,
      limit_exceeded: 429,
      provider_error: 502,
      step_limit: 502,
      no_model: 503,
      model_unavailable: 503,
      not_ready: 503,
      timeout: 504,
    }[code] || 500
  );
}
