// Server-sent events read from a fetch response body (EventSource cannot POST or send a token).

/** One event block (the lines between two blank lines) as {event, data}, or null when it has no data. */
function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0) return null;
  let payload;
  try {
    payload = JSON.parse(data.join("\n"));
  } catch {
    payload = { text: data.join("\n") };
  }
  // Tolerate servers that put the event name in the payload instead of an `event:` line.
  if (event === "message" && payload && typeof payload === "object" && typeof payload.event === "string") {
    event = payload.event;
  }
  return { event, data: payload };
}

/**
 * Reads a text/event-stream body and yields {event, data} for each complete event.
 * Handles \r\n and \n line ends (split across chunks too), multi-line data and comment lines.
 */
export async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    // A lone \r at the end of a chunk may be the first half of \r\n: keep it until more arrives.
    buffer = (buffer + value).replace(/\r\n|\r(?=[\s\S])/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const parsed = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (parsed) yield parsed;
    }
  }
  const rest = parseEvent(buffer.replace(/\r/g, "\n"));
  if (rest) yield rest;
}
