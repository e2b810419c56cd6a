// The message box with Send and Stop: Enter sends, Shift+Enter adds a line.

import { ui } from "./elements.js";

let replying = false;

/** Shows whether a reply is in progress: Stop instead of Send, no new conversation meanwhile. */
export function showReplying(busy) {
  replying = busy;
  ui.send.hidden = busy;
  ui.stop.hidden = !busy;
  ui.input.setAttribute("aria-busy", busy ? "true" : "false");
  ui.newConversation.disabled = busy;
}

/** Puts a message that got no answer back in the box, so it can be sent again without retyping. */
export function giveBack(text) {
  if (!ui.input.value) ui.input.value = text;
}

/** Wires the composer: `send(text)` for a message, `stop()` for the Stop button. */
export function setUpComposer({ send, stop }) {
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    if (replying) return;
    const text = ui.input.value.trim();
    if (!text) {
      ui.input.focus();
      return;
    }
    ui.input.value = "";
    send(text);
    ui.input.focus();
  });

  ui.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.composer.requestSubmit();
    }
  });

  ui.stop.addEventListener("click", stop);
}
