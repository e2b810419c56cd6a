// What the service says about itself in GET api/status that other parts of the page need: whether it runs
// as the local demo (`make run`, AI_OPS_DEMO), so advice such as "start Ollama" is given only there.
// A service that does not say is not the demo.

let demo = false;

export function rememberService(status) {
  demo = Boolean(status && status.demo === true);
}

export function isDemo() {
  return demo;
}
