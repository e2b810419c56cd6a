// The page's elements, looked up once. Module scripts run after the document is parsed, so all exist.

const byId = (id) => document.getElementById(id);

// Sent on the document by a view that is about to take the chat's place (Incidents, Usage), naming itself,
// so that the one open before closes.
export const VIEW_EVENT = "ai-ops-view";

export const ui = {
  modelSelect: byId("model-select"),
  newConversation: byId("new-conversation"),
  tokenButton: byId("token-button"),
  banner: byId("banner"),
  bannerText: byId("banner-text"),
  bannerAction: byId("banner-action"),
  healthBanner: byId("health-banner"),
  healthBannerText: byId("health-banner-text"),
  threadList: byId("thread-list"),
  threadListNote: byId("thread-list-note"),
  conversation: byId("conversation"),
  emptyHint: byId("empty-hint"),
  composer: byId("composer"),
  input: byId("message-input"),
  send: byId("send-button"),
  stop: byId("stop-button"),
  statusBody: byId("status-body"),
  threadLabel: byId("thread-label"),
  tokenDialog: byId("token-dialog"),
  tokenForm: byId("token-form"),
  tokenReason: byId("token-reason"),
  tokenInput: byId("token-input"),
  tokenCancel: byId("token-cancel"),
  tokenForget: byId("token-forget"),
  announcer: byId("announcer"),
};
