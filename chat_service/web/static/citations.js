// Runbook citations under an assistant reply: the runbook sections the answer rests on (SSE `citation`
// events). Text from the server is inserted as text only.

/** Adds one citation {runbook, title, section} to the turn's list (made on the first one). */
export function showCitation(turn, citation) {
  if (!citation || !citation.runbook) return;
  let list = turn.article.querySelector(".citations ul");
  if (!list) {
    const aside = document.createElement("aside");
    aside.className = "citations";
    aside.setAttribute("aria-label", "Runbooks cited");
    const heading = document.createElement("h4");
    heading.textContent = "Runbooks";
    list = document.createElement("ul");
    aside.append(heading, list);
    turn.article.insertBefore(aside, turn.meta); // under the reply, above the token count
  }
  const item = document.createElement("li");
  item.className = "citation";
  const title = document.createElement("span");
  title.className = "citation-title";
  title.textContent = citation.title || citation.runbook;
  const name = document.createElement("code");
  name.className = "citation-runbook";
  name.textContent = citation.runbook;
  item.append(title, " (", name, ")");
  if (citation.section) {
    const section = document.createElement("span");
    section.className = "citation-section";
    section.textContent = " · " + citation.section;
    item.append(section);
  }
  list.append(item);
}
