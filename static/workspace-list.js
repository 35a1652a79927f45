// The workspaces panel: the current project's workspaces with their template and status (POST /containers/list,
// page by page), a click switches to one, and Delete removes one for good (POST /containers/delete) after a confirm
// dialog. A scoped token's list holds only what the token covers; a read-only one deletes nothing.

import { api } from "./api.js";
import { confirmDialog, note, showError } from "./notify.js";
import { $, h, svgIcon } from "./util.js";

const TRASH = "M2.5 4h11 M6 4V2.5h4V4 M4 4l.7 9.5h6.6L12 4 M6.8 6.5v5 M9.2 6.5v5";
const REFRESH_EVERY_MS = 30_000;

const STATUS_WORDS = { running: "running", exited: "stopped", removed: "removed", missing: "not started" };

export class WorkspaceList {
  /**
   * @param {HTMLElement} host the list
   * @param {object} parts
   * @param {import("./workspace.js").Workspace} parts.workspace
   */
  constructor(host, { workspace }) {
    this.host = host;
    this.workspace = workspace;
    this.projectId = null;
    this.items = [];
    this.nextCursor = null;
    this.canDelete = true;
    this.autoPick = false; // open the first listed workspace when the open one is not in the list (once)
    this.generation = 0;
    this.refreshSoon = 0;
    setInterval(() => {
      if (document.visibilityState === "visible") this.refresh();
    }, REFRESH_EVERY_MS);
  }

  /** Whether Delete is offered (a read-only token may not). */
  setDeletable(canDelete) {
    this.canDelete = canDelete;
    this.render();
  }

  /** List the project's workspaces again (now, or shortly when `soon`, so a burst of status events lists once). */
  refresh({ soon = false } = {}) {
    if (soon) {
      clearTimeout(this.refreshSoon);
      this.refreshSoon = setTimeout(() => this.refresh(), 400);
      return Promise.resolve();
    }
    return this._load(null);
  }

  async more() {
    if (this.nextCursor) await this._load(this.nextCursor);
  }

  async _load(cursor) {
    const ref = this.workspace.ref;
    if (!ref) return;
    const generation = ++this.generation;
    try {
      const answer = await api.workspaces(ref.projectId, cursor);
      if (generation !== this.generation) return;
      this.projectId = ref.projectId;
      this.items = cursor ? [...this.items, ...answer.data] : answer.data;
      this.nextCursor = answer.nextCursor || null;
      this.error = "";
      if (this.autoPick && !cursor) {
        this.autoPick = false;
        const pick = this.items.find((item) => item.running) || this.items[0];
        if (pick && !this.items.some((item) => this.workspace.isCurrent(item))) {
          this._open(pick);
          return;
        }
      }
    } catch (err) {
      if (generation !== this.generation) return;
      if (err.status === 401) return; // the token dialog says it
      this.error = err.message;
      if (err.status === 403) showError(err);
    }
    this.render();
  }

  render() {
    const ref = this.workspace.ref;
    $("workspaces-project").textContent = ref ? ref.projectId : "";
    $("workspaces-more").hidden = !this.nextCursor;
    if (!ref) return;
    const rows = this.items.filter((item) => item.projectId === ref.projectId).map((item) => this._row(item));
    const listed = this.items.some((item) => item.workspaceId === ref.workspaceId && item.projectId === ref.projectId);
    if (!listed && this.projectId === ref.projectId) {
      // The open workspace before its first start: shown, so the list always says where the page is.
      rows.unshift(this._row({ ...ref, status: "missing", running: false }));
    }
    if (this.error) rows.push(h("li", { class: "ws-empty error-text" }, this.error));
    else if (rows.length === 0) rows.push(h("li", { class: "ws-empty" }, "No workspaces yet"));
    this.host.replaceChildren(...rows);
  }

  _row(item) {
    const current = this.workspace.ref;
    const isCurrent = current && item.workspaceId === current.workspaceId && item.projectId === current.projectId;
    const status = item.running ? "running" : item.status;
    const words = STATUS_WORDS[status] || status;
    const made = item.template ? `, template ${item.template}` : "";
    const title = [
      `${item.projectId}/${item.workspaceId}: ${words}${made}`,
      item.stopReason ? `(${item.stopReason})` : "",
    ];
    const open = h(
      "button",
      {
        class: "ws-open",
        type: "button",
        title: isCurrent ? `${title.join(" ")}, open here` : `Open ${item.workspaceId} (${words}${made})`,
        "aria-current": isCurrent ? "true" : undefined,
        onclick: () => this._open(item),
      },
      h("span", { class: "ws-dot", "aria-hidden": "true" }),
      h("span", { class: "ws-name" }, item.workspaceId),
      item.template ? h("span", { class: "ws-template" }, item.template) : null,
      h("span", { class: "ws-status" }, words),
    );
    const remove =
      this.canDelete && status !== "missing"
        ? h(
            "button",
            {
              class: "icon-btn ws-delete",
              type: "button",
              title: `Delete workspace ${item.workspaceId}`,
              "aria-label": `Delete workspace ${item.workspaceId}`,
              onclick: () => this.remove(item),
            },
            svgIcon(TRASH),
          )
        : null;
    return h(
      "li",
      {
        class: "ws-row" + (isCurrent ? " current" : ""),
        dataset: { workspaceId: item.workspaceId, status, template: item.template || "" },
      },
      open,
      remove,
    );
  }

  _open(item) {
    const ref = { projectId: item.projectId, workspaceId: item.workspaceId };
    if (this.workspace.isCurrent(ref)) return;
    this.workspace.switchTo(ref);
    this.render();
  }

  /** Delete a workspace for good, after the user confirmed it; the open one is cleared and the page says so. */
  async remove(item) {
    const ref = { projectId: item.projectId, workspaceId: item.workspaceId };
    const name = `${ref.projectId}/${ref.workspaceId}`;
    const isOpen = this.workspace.isCurrent(ref);
    const text =
      "Its container, its files and its terminals are removed for good; a later Start begins empty." +
      (isOpen ? " It is the workspace open in this page." : "");
    if (!(await confirmDialog(`Delete workspace ${name}?`, text, "Delete workspace"))) return;
    const row = this.host.querySelector(`.ws-row[data-workspace-id="${CSS.escape(ref.workspaceId)}"]`);
    row?.classList.add("deleting");
    try {
      await api.deleteWorkspace(ref);
      if (this.workspace.isCurrent(ref)) this.workspace.onDeleted();
      note(`Deleted workspace ${name}`);
    } catch (err) {
      showError(err);
    }
    await this.refresh();
  }
}
