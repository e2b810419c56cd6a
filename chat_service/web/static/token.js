// The access-token dialog: asked for when the API answers 401, and behind the "Access token…" button.

import { savedToken, saveToken } from "./api.js";
import { ui } from "./elements.js";
import { clearBanner, showBanner } from "./notices.js";

export function askForToken(reason) {
  ui.tokenButton.hidden = false;
  const saved = savedToken();
  ui.tokenReason.textContent =
    reason ||
    (saved
      ? "The saved access token was not accepted. Enter a valid token."
      : "This chat service requires an access token. Ask the team that runs it for one.");
  ui.tokenForget.hidden = !saved;
  ui.tokenInput.value = "";
  showBanner("An access token is needed to use this chat.", { label: "Enter token", run: () => askForToken() });
  if (!ui.tokenDialog.open) ui.tokenDialog.showModal();
  ui.tokenInput.focus();
}

/** The "Access token…" button is offered once a token is saved (or one was asked for). */
export function refreshTokenButton() {
  ui.tokenButton.hidden = !savedToken();
}

/** Wires the dialog; `onSaved` runs after a token is saved (to load the page again with it). */
export function setUpTokenDialog(onSaved) {
  ui.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = ui.tokenInput.value.trim();
    if (!token) {
      ui.tokenReason.textContent = "Enter the token first (it must not be empty).";
      ui.tokenInput.focus();
      return;
    }
    saveToken(token);
    ui.tokenDialog.close();
    clearBanner();
    onSaved();
  });
  ui.tokenCancel.addEventListener("click", () => ui.tokenDialog.close());
  ui.tokenForget.addEventListener("click", () => {
    saveToken(null);
    ui.tokenForget.hidden = true;
    ui.tokenReason.textContent = "The saved token was removed from this browser.";
    ui.tokenInput.focus();
  });
  ui.tokenButton.addEventListener("click", () => askForToken("Enter a new access token, or forget the saved one."));
}
