// The browser's local storage, which private mode may refuse: then the page still works, it just forgets
// on reload. Each module that keeps something names its own key.

export function load(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null;
  }
}

/** Stores `value` under `key`; an empty value removes the key. */
export function save(key, value) {
  try {
    if (value === null || value === undefined || value === "") window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, value);
  } catch {
    /* storage unavailable: see above */
  }
}
