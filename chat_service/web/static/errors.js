// Errors in plain words: what happened and what to do, and where the page shows them.

import { ApiError } from "./api.js";
import { showBanner } from "./notices.js";
import { isDemo } from "./service.js";
import { askForToken } from "./token.js";

/**
 * An error in plain words: `text` says what happened and what to do; `banner` when it concerns the whole
 * service (shown at the top, where it stays until a reply succeeds), and then `short` is what the failed
 * reply itself says, so the advice is not repeated twice on screen.
 */
export function explain(err) {
  if (!(err instanceof ApiError)) {
    return { text: "Something went wrong in this page: " + (err && err.message ? err.message : err), banner: false };
  }
  const detail = err.message ? " (" + err.message + ")" : "";
  switch (err.status) {
    case 0:
      return {
        text:
          "Cannot reach the ai-ops chat service. Check that it is still running and that this computer is " +
          "connected, then try again.",
        short: "the chat service cannot be reached",
        banner: true,
      };
    case 401:
      return {
        text: "This chat service needs a valid access token." + detail,
        short: "an access token is needed",
        banner: true,
        auth: true,
      };
    case 404:
      if (err.code === "model_not_found") {
        return { text: "The selected model no longer exists. Pick another one in the Model list." + detail, banner: false };
      }
      if (err.code === "thread_not_found") {
        return { text: "This conversation no longer exists on the server (it may have expired).", banner: false };
      }
      return { text: "Not found" + detail, banner: false };
    case 413:
    case 422:
      if (err.code === "content_blocked") {
        return { text: "The message was blocked by a safety rule of this service" + detail + ".", banner: false };
      }
      return { text: "The service did not accept the message" + detail + ".", banner: false };
    case 429:
      return { text: "A configured limit stopped this reply" + detail + ".", banner: false };
    case 502:
      if (err.code === "step_limit") {
        return {
          text: "The assistant stopped before finishing: it took too many steps for one reply" + detail +
            ". Try a narrower question.",
          banner: false,
        };
      }
      // Advice for the local demo only: in a cluster, starting Ollama is nobody's fix.
      return {
        text:
          "The model's provider could not be reached or failed" + (err.message ? ": " + err.message : "") + "." +
          (isDemo()
            ? " For the local demo: start Ollama and pull the model, or set OPENAI_API_KEY, then run make run again."
            : " The team that runs this service can check the provider's status."),
        short: "the model's provider could not be reached or failed",
        banner: true,
      };
    case 503:
      if (err.code === "no_model") {
        return {
          // The service's own message says how to configure one.
          text:
            err.message ||
            "No language model is configured. Create an LLMProvider and an LLMModel in the service's namespace, " +
              "or render a local config with ai-ops render.",
          short: "no language model is configured",
          banner: true,
        };
      }
      if (err.code === "model_unavailable") {
        return {
          text: "The selected model cannot be used right now" + detail + ". See Service status at the bottom.",
          short: "the selected model cannot be used right now",
          banner: true,
          kind: "model", // picking a usable model clears it
        };
      }
      return {
        text: "The chat service is not ready yet" + detail + ". Try again in a moment.",
        short: "the chat service is not ready yet",
        banner: true,
      };
    case 504:
      return {
        text: "The model took too long to answer and the request timed out. Try again, or ask a smaller question.",
        banner: false,
      };
    default:
      return {
        text: "The chat service answered with an error (HTTP " + err.status + ")" + detail + ".",
        banner: err.status >= 500,
      };
  }
}

/** What a failed reply says: the short form when the banner at the top has the details. */
export function replyFailure(info) {
  return info.banner && info.short ? "No reply: " + info.short + ". See the notice at the top." : info.text;
}

/** Handles an error of any call: token prompt for 401, banner for service-wide trouble. */
export function report(err) {
  const info = explain(err);
  if (info.auth) askForToken();
  else if (info.banner) showBanner(info.text, null, info.kind);
  return info;
}
