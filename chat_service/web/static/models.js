// The model picker, filled from GET api/models; an explicit choice is remembered in the browser.

import { ApiError, getJson } from "./api.js";
import { ui } from "./elements.js";
import { report } from "./errors.js";
import { showBanner } from "./notices.js";
import { load, save } from "./storage.js";

const MODEL_KEY = "ai-ops.model";

let models = []; // as GET api/models lists them

/** The name of the selected model, or "" when there is none (the service then uses its default). */
export function selectedModelName() {
  return ui.modelSelect.value;
}

/** Fills the picker; false when the models could not be loaded (the error is reported). */
export async function loadModels() {
  ui.modelSelect.disabled = true;
  let body;
  try {
    body = await getJson("api/models");
  } catch (err) {
    const needsToken = err instanceof ApiError && err.status === 401;
    ui.modelSelect.replaceChildren(new Option(needsToken ? "Token needed" : "Models unavailable", ""));
    report(err);
    return false;
  }
  models = Array.isArray(body) ? body : body.models || body.data || [];
  ui.modelSelect.replaceChildren();
  if (models.length === 0) {
    ui.modelSelect.append(new Option("No model configured", ""));
    showBanner(
      "No language model is configured, so the assistant cannot answer. Create an LLMProvider and an " +
        "LLMModel in the service's namespace (kubectl apply -f ...), or render a local config with ai-ops render " +
        "and restart the service with --config.",
    );
    return true;
  }
  const remembered = load(MODEL_KEY);
  const selected = models.find((m) => m.name === remembered) || models.find((m) => m.default) || models[0];
  for (const m of models) {
    // Short labels (the provider type is in Service status and the tooltip).
    let label = m.name + (m.model && m.model !== m.name ? " (" + m.model + ")" : "");
    if (m.default) label += " – default";
    const option = new Option(label, m.name);
    option.title = [m.provider, m.model, m.description].filter(Boolean).join(" · ");
    option.selected = m === selected;
    ui.modelSelect.append(option);
  }
  ui.modelSelect.disabled = false;
  return true;
}

/** Wires the picker; `onChange` runs after each choice. */
export function setUpModelPicker(onChange) {
  ui.modelSelect.addEventListener("change", () => {
    const chosen = models.find((m) => m.name === ui.modelSelect.value);
    // Remember an explicit choice only when it is not simply the default.
    save(MODEL_KEY, chosen && !chosen.default ? chosen.name : null);
    onChange();
  });
}
