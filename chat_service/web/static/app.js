// The ai-ops chat page, entry module: wires the parts together and loads the page's data.
// Plain JavaScript modules, no framework, no build step, no CDN. The page talks only to the service's own
// HTTP API (GET api/models, api/status, api/threads, api/threads/{id}, api/investigations[/{name}]; POST api/chat/stream; DELETE
// api/threads/{id}) and inserts text from the server as text, except the model's replies, which become
// sanitized Markdown (markdown.js).

import { setUpApprovals } from "./approvals.js";
import { sendMessage, stopReply } from "./chat.js";
import { setUpComposer } from "./composer.js";
import { setUpIncidents } from "./incidents.js";
import { loadModels, setUpModelPicker } from "./models.js";
import { clearBanner } from "./notices.js";
import { loadThreadList, setUpSidebar } from "./sidebar.js";
import { checkSelectedModel, loadStatus } from "./status.js";
import { loadHistory, setUpNewConversationButton } from "./thread.js";
import { refreshTokenButton, setUpTokenDialog } from "./token.js";
import { setUpUsageView } from "./usage.js";

async function start() {
  clearBanner();
  refreshTokenButton();
  // Models first: a 401 here opens the token prompt once instead of three times.
  const ok = await loadModels();
  if (!ok) return;
  await Promise.all([loadStatus(), loadHistory(), loadThreadList()]);
}

setUpTokenDialog(start); // a saved token loads everything again
setUpModelPicker(checkSelectedModel);
setUpComposer({ send: sendMessage, stop: stopReply });
setUpNewConversationButton();
setUpSidebar();
setUpIncidents();
setUpUsageView();
setUpApprovals();
start();
