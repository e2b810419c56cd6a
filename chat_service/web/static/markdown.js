// The model's replies as Markdown: headings, lists, code, tables, links. The one place where the page
// makes elements from text it did not write, so it is strict twice over: marked (vendor/) turns the text
// into HTML with any raw HTML in it escaped, so it shows as text; then DOMPurify (vendor/) keeps only the
// elements and attributes listed below and links to http(s) and mailto, and hands back DOM nodes, which
// are inserted as they are (no innerHTML on the page). Links open in a new tab without referrer or opener.

import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const markdown = new Marked({
  gfm: true,
  async: false,
  renderer: {
    // Raw HTML in the model's text (block or inline) is shown as the text it is, never made into elements.
    html({ text }) {
      return escapeHtml(text);
    },
    // No images: they would load from anywhere (the page's CSP blocks other origins anyway). A link instead.
    image({ href, text }) {
      return '<a href="' + escapeHtml(href) + '">' + escapeHtml(text || href) + "</a>";
    },
  },
});

const ALLOWED_TAGS = [
  "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "ol", "p",
  "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
];
const ALLOWED_ATTR = ["href", "title", "align", "start"];
const PURIFY_OPTIONS = {
  ALLOWED_TAGS,
  ALLOWED_ATTR,
  ALLOWED_URI_REGEXP: /^(?:https?|mailto):/i, // no javascript:, data:, or links into this service
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

/** Replaces the contents of `container` with `text` rendered as sanitized Markdown. */
export function renderMarkdown(container, text) {
  const html = markdown.parse(String(text || ""));
  container.replaceChildren(DOMPurify.sanitize(html, PURIFY_OPTIONS));
  container.classList.add("markdown");
}
