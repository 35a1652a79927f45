// The run box: one command through the REST exec, its stdout, stderr and exit code shown apart.

import { api } from "./api.js";
import { showError } from "./notify.js";
import { $ } from "./util.js";
import { RUNNING_STATES } from "./workspace.js";

export class RunBox {
  /**
   * @param {object} parts
   * @param {import("./workspace.js").Workspace} parts.workspace
   * @param {import("./tree.js").FileTree} parts.tree refreshed after a command, which may have changed files
   */
  constructor({ workspace, tree }) {
    this.workspace = workspace;
    this.tree = tree;
  }

  async run(event) {
    event.preventDefault();
    const command = $("run-command").value.trim();
    const ref = this.workspace.ref;
    if (!command || !ref) return;
    const button = $("run");
    const exit = $("run-exit");
    button.disabled = true;
    button.classList.add("loading");
    exit.hidden = false;
    exit.className = "chip running";
    exit.textContent = "running…";
    $("run-stdout").textContent = "";
    $("run-stderr").textContent = "";
    try {
      const answer = await api.exec(ref, command, { timeout: 300 });
      $("run-stdout").textContent = answer.output;
      $("run-stderr").textContent = answer.error;
      const flags = [answer.timedOut ? "timed out" : "", answer.truncated ? "truncated" : ""].filter(Boolean);
      exit.className = "chip " + (answer.exitCode === 0 ? "ok" : "bad");
      exit.dataset.exitCode = String(answer.exitCode);
      exit.textContent = `exit ${answer.exitCode}` + (flags.length ? ` · ${flags.join(", ")}` : "");
      exit.title = answer.durationMs !== undefined ? `${answer.durationMs} ms` : "";
      if (answer.exitCode === 0 || answer.output || answer.error) this.tree.refresh();
    } catch (err) {
      exit.className = "chip bad";
      exit.textContent = "failed";
      showError(err);
    } finally {
      button.classList.remove("loading");
      button.disabled = !RUNNING_STATES.has(this.workspace.status);
    }
  }
}
