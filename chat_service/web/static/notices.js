// The banner at the top (trouble that concerns the whole service) and announcements for screen readers.

import { ui } from "./elements.js";

let bannerKind = null; // what the banner is about, so only that can clear it

/** `action` is {label, run} for the banner's button; `kind` names what the banner is about. */
export function showBanner(text, action, kind) {
  bannerKind = kind || null;
  ui.bannerText.textContent = text;
  ui.banner.hidden = false;
  if (action) {
    ui.bannerAction.textContent = action.label;
    ui.bannerAction.onclick = action.run;
    ui.bannerAction.hidden = false;
  } else {
    ui.bannerAction.hidden = true;
    ui.bannerAction.onclick = null;
  }
}

export function clearBanner() {
  bannerKind = null;
  ui.banner.hidden = true;
  ui.bannerText.textContent = "";
  ui.bannerAction.hidden = true;
}

/** Clears the banner only if it is about `kind`, so a banner about something else stays. */
export function clearBannerAbout(kind) {
  if (bannerKind === kind) clearBanner();
}

export function announce(text) {
  ui.announcer.textContent = text;
}
