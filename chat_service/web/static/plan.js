// The agent's plan (SSE `plan` events, from the todo_list middleware's write_todos tool) as a checklist at
// the top of the assistant turn, redrawn each time the plan changes. Text is inserted as text only.

const STATUS_LABELS = { pending: "to do", in_progress: "in progress", completed: "done" };

/** Shows `todos` [{content, status}] as the turn's plan, replacing the previous version. */
export function showPlan(turn, todos) {
  let box = turn.article.querySelector(".plan");
  if (!box) {
    box = document.createElement("section");
    box.className = "plan";
    box.setAttribute("aria-label", "Plan");
    const heading = document.createElement("h4");
    heading.textContent = "Plan";
    box.append(heading, document.createElement("ul"));
    turn.article.insertBefore(box, turn.blocks);
  }
  const list = box.querySelector("ul");
  const items = (Array.isArray(todos) ? todos : []).map((todo) => {
    const status = STATUS_LABELS[todo.status] ? todo.status : "pending";
    const item = document.createElement("li");
    item.className = "todo " + status.replace("_", "-");
    const check = document.createElement("input");
    check.type = "checkbox";
    check.disabled = true;
    check.checked = status === "completed";
    const text = document.createElement("span");
    text.className = "todo-text";
    text.textContent = String(todo.content || "");
    const state = document.createElement("span");
    state.className = "todo-state";
    state.textContent = STATUS_LABELS[status];
    item.append(check, text, state);
    return item;
  });
  list.replaceChildren(...items);
}
