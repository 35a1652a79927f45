// The workspace the page shows: its ids in the top bar, its status badge and the words beside it, start and stop (the
// page is busy while one is in flight; Start sends the template picked, and says when it re-creates the container)
// and the VS Code button. It tells the tree, the editor, the terminal and the template picker when the workspace
// changes, starts, stops or is deleted.

import { api, getToken } from "./api.js";
import { note, showError, toast } from "./notify.js";
import { describeStatus, renderStatus } from "./status-detail.js";
import { $, ID_PATTERN } from "./util.js";

const IDS_KEY = "ide-backend.ids";

const STATUS_TEXT = {
  unknown: "connecting",
  missing: "not started",
  pending: "…",
  creating: "creating",
  starting: "starting",
  running: "running",
  syncing: "syncing",
  stopping: "stopping",
  exited: "exited",
  died: "died",
  oom: "out of memory",
  removed: "removed",
};
export const RUNNING_STATES = new Set(["running", "syncing"]);
const STOPPED_STATES = new Set(["exited", "died", "oom", "removed", "missing"]);
const DETAIL_EVERY_MS = 30_000; // idleStopAt moves whenever something uses the workspace
const DELETED = { text: "deleted", title: "Deleted for good: a start begins empty", kind: "stopped-why" };
const ID_RULE = "1-63 letters, digits, '_', '-' or '.', starting with a letter or digit and not ending with '.'";

/** The ids the page used last time, or the defaults. */
export function loadIds() {
  try {
    const saved = JSON.parse(localStorage.getItem(IDS_KEY) || "null");
    if (saved && ID_PATTERN.test(saved.projectId) && ID_PATTERN.test(saved.workspaceId)) return saved;
  } catch {
    // ignore a broken entry
  }
  return { projectId: "demo", workspaceId: "main" };
}

export class Workspace {
  /**
   * @param {object} parts
   * @param {import("./live.js").LiveChannel} parts.live
   * @param {import("./tree.js").FileTree} parts.tree
   * @param {import("./editor.js").Editor} parts.editor
   * @param {() => import("./terminal.js").ShellTerminal | null} parts.terminal null until made, or without xterm.js
   * @param {() => import("./run-box.js").RunBox} parts.runBox the run box (its command belongs to the workspace shown)
   * @param {() => import("./template-picker.js").TemplatePicker} parts.templates the template picker
   * @param {() => string} parts.themeName the theme to set in VS Code when the workspace starts
   * @param {(why: "switch" | "status") => void} parts.onChange the workspace or its status changed (the list follows)
   */
  constructor({ live, tree, editor, terminal, runBox, templates, themeName, onChange }) {
    this.live = live;
    this.tree = tree;
    this.editor = editor;
    this._terminal = terminal;
    this._runBox = runBox;
    this._templates = templates;
    this.themeName = themeName;
    this.onChange = onChange || (() => {});
    this.ref = null; // {projectId, workspaceId}
    this.status = "unknown";
    this.running = false; // the tree and the shell were told it runs
    this.busy = false; // a start or stop is in flight
    this.ideUrl = null;
    this.template = null; // the template the workspace was made from (/status); null: never started, or not known yet
    this.scope = null; // what the token covers (scope.js); null: everything
    this.deleted = false; // the open workspace was deleted (until it is started again)
    this.recreating = false; // a start is re-creating the container from another template
    setInterval(() => {
      if (this.running && document.visibilityState === "visible") this.refreshDetails();
    }, DETAIL_EVERY_MS);
  }

  get canWrite() {
    return !this.scope || this.scope.canWrite;
  }

  isCurrent(ref) {
    return Boolean(this.ref && ref.projectId === this.ref.projectId && ref.workspaceId === this.ref.workspaceId);
  }

  get terminal() {
    return this._terminal();
  }

  get runBox() {
    return this._runBox();
  }

  get templates() {
    return this._templates();
  }

  /**
   * What is wrong with the ids typed in the top bar ("" when both are ids the server takes). Start and Stop are off
   * meanwhile, saying this, so that they never act on the workspace shown before while the fields show another.
   */
  idsProblem() {
    for (const [label, id] of [["Project", "project-id"], ["Workspace", "workspace-id"]]) {
      const value = $(id).value.trim();
      if (!ID_PATTERN.test(value)) return `${label} id ${value ? `"${value}" is not valid` : "is empty"}: ${ID_RULE}`;
    }
    return "";
  }

  /** An id was typed (not yet applied): each field says whether it is valid, and Start and Stop follow. */
  idsEdited() {
    for (const id of ["project-id", "workspace-id"]) {
      const input = $(id);
      input.setCustomValidity(ID_PATTERN.test(input.value.trim()) ? "" : ID_RULE);
    }
    this.updateStart();
    this.updateStop();
    this.runBox.update();
  }

  /** The ids typed in the top bar; switches the page to them when they changed. Returns false when invalid. */
  applyIds() {
    const projectId = $("project-id").value.trim();
    const workspaceId = $("workspace-id").value.trim();
    const problem = this.idsProblem();
    if (problem) {
      toast(problem);
      return false;
    }
    if (this.ref && this.ref.projectId === projectId && this.ref.workspaceId === workspaceId) return true;
    const scope = this.scope;
    if (scope && (projectId !== scope.projectId || (scope.workspaceId && workspaceId !== scope.workspaceId))) {
      const { projectId: project, workspaceId: only } = scope;
      toast(`This token is for ${only ? `workspace ${project}/${only}` : `project ${project}`} only`);
      $("project-id").value = this.ref.projectId;
      $("workspace-id").value = this.ref.workspaceId;
      this.idsEdited();
      return false;
    }
    this.switchTo({ projectId, workspaceId });
    return true;
  }

  switchTo(ref) {
    if (this.ref) this.live.unsubscribe(this.ref);
    this.ref = ref;
    this.running = false;
    this.deleted = false;
    this.template = null;
    this.templates.switched();
    localStorage.setItem(IDS_KEY, JSON.stringify(ref));
    $("project-id").value = ref.projectId;
    $("workspace-id").value = ref.workspaceId;
    for (const id of ["project-id", "workspace-id"]) $(id).setCustomValidity("");
    $("status-ref").textContent = `${ref.projectId} / ${ref.workspaceId}`;
    document.title = `${ref.projectId}/${ref.workspaceId} · ide-backend`;
    this.editor.setWorkspace(ref);
    this.tree.setWorkspace(ref);
    this.terminal?.setWorkspace(ref);
    this.runBox.setWorkspace(ref);
    this.setStatus("unknown");
    this.live.subscribe(ref);
    this.onChange("switch");
  }

  resubscribe() {
    if (this.ref) this.live.subscribe(this.ref);
  }

  // --- status ------------------------------------------------------------------------------------------------

  setStatus(status, detail = "") {
    const changed = status !== this.status;
    this.status = status;
    const badge = $("status-badge");
    badge.dataset.status = status;
    badge.textContent = STATUS_TEXT[status] || status;
    badge.title = detail || `Workspace status: ${STATUS_TEXT[status] || status}`;
    const running = RUNNING_STATES.has(status);
    if (status === "missing") this._setTemplate(null);
    this.updateStart();
    this.updateStop();
    if (running && !this.running) {
      this.running = true;
      this.tree.setAvailable(true);
      this.tree.refresh();
      this.terminal?.resume();
    } else if (!running && STOPPED_STATES.has(status)) {
      this.running = false;
      const why = this.deleted
        ? "This workspace was deleted, and its files with it. Start it to begin with an empty one."
        : status === "missing"
          ? "Start the workspace to browse its files."
          : "The workspace is stopped.";
      this.tree.setAvailable(false, why);
    }
    this.runBox.update();
    if (running || (STOPPED_STATES.has(status) && status !== "missing")) this.refreshDetails();
    else this._showDetails(null);
    if (!running) this._setIde(null);
    if (changed && status !== "unknown") this.onChange("status");
  }

  /** The workspace's own template, from /status or /start (null: it has none); the picker shows it. */
  _setTemplate(name) {
    this.template = name || null;
    this.templates.showStored(this.template);
    this.updateStart();
  }

  /**
   * Start is offered while the workspace is not running, or when another template than its own is picked: then it
   * reads "Restart as <template>" (or "Start as" when stopped), as the container is re-created from that template on
   * the same volume, files kept.
   */
  updateStart() {
    const button = $("start");
    const running = RUNNING_STATES.has(this.status);
    const wanted = this.templates.wanted;
    const other = Boolean(wanted && this.template && wanted !== this.template);
    const problem = this.idsProblem();
    const busy = this.busy || ["creating", "starting", "stopping"].includes(this.status);
    button.disabled = Boolean(problem) || busy || (running && !other);
    $("start-label").textContent = other ? `${running ? "Restart" : "Start"} as ${wanted}` : "Start";
    button.title = problem || this._startTitle(wanted, other);
  }

  _startTitle(wanted, other) {
    if (other) {
      return (
        `Re-create the container from the ${wanted} template (it was made from ${this.template}); ` +
        "the files in /workspace are kept, running processes and terminals end"
      );
    }
    if (this.template) return `Start the workspace (template ${this.template})`;
    return wanted ? `Start a new workspace from the ${wanted} template` : "Start the workspace";
  }

  /** Stop is offered while the workspace the fields show runs; its tooltip names it. */
  updateStop() {
    const button = $("stop");
    const problem = this.idsProblem();
    button.disabled = Boolean(problem) || this.busy || STOPPED_STATES.has(this.status) || this.status === "unknown";
    const ref = this.ref;
    button.title = problem || (ref ? `Stop ${ref.projectId}/${ref.workspaceId}; its files are kept` : "");
  }

  /** A `status` event from the live channel. */
  onStatusEvent(event) {
    if (!this.ref || event.projectId !== this.ref.projectId || event.workspaceId !== this.ref.workspaceId) return;
    if (this.busy && event.source === "snapshot" && !RUNNING_STATES.has(event.status)) return; // start in flight
    if (event.status === "removed" && event.reason === "deleted") {
      this.onDeleted(); // here, or by another tab or client
      return;
    }
    // The old container's end while a start re-creates it is no news: the badge stays on starting.
    if (this.recreating && !["creating", "starting", "running"].includes(event.status)) return;
    // The engine's last words about a deleted workspace's container change nothing; a new start does.
    if (this.deleted && !["creating", "starting", "running"].includes(event.status)) return;
    // A save into a stopped workspace goes through "syncing" (the engine writes the files), yet nothing runs.
    if (event.status === "syncing" && !RUNNING_STATES.has(this.status)) return;
    this.deleted = false;
    const detail = event.exitCode !== undefined && event.exitCode !== null ? `exit code ${event.exitCode}` : "";
    this.setStatus(event.status, detail);
  }

  /** A subscribe the live channel had refused: not_found means the workspace was never started here. */
  onSubscribeError(ref, error) {
    if (!this.ref || ref.projectId !== this.ref.projectId || ref.workspaceId !== this.ref.workspaceId) return;
    if (error.code === "not_found") {
      if (!this.busy) this.setStatus("missing", "This workspace was never started here");
    } else {
      showError(error);
    }
  }

  /** After a failed start/stop: ask REST what the workspace is now, in case the live channel is down too. */
  async _statusFromRest(ref) {
    try {
      const { data } = await api.status(ref);
      if (ref !== this.ref) return;
      this._setTemplate(data.template);
      this.setStatus(data.running ? "running" : data.status === "removed" ? "removed" : "exited");
    } catch (err) {
      if (ref === this.ref) this.setStatus(err.status === 404 ? "missing" : this.status);
    }
  }

  // --- start and stop ----------------------------------------------------------------------------------------

  /**
   * One start or stop: the page is busy and the button shows it meanwhile; a failure is shown and the status asked
   * of REST; afterwards the live channel follows the workspace again.
   */
  async _lifecycle(button, ref, status, call) {
    this.busy = true;
    this.setStatus(status);
    $(button).classList.add("loading");
    try {
      await call();
    } catch (err) {
      showError(err);
      this.busy = false;
      await this._statusFromRest(ref);
    } finally {
      this.busy = false;
      $(button).classList.remove("loading");
      // The answer to subscribe is a snapshot of what the workspace is now; events follow.
      if (ref === this.ref) this.live.subscribe(ref);
    }
  }

  /** The open workspace was deleted: nothing of it is left to show; a later start begins empty. */
  onDeleted() {
    if (this.deleted) return; // said already
    this.deleted = true;
    this.running = false;
    this.editor.closeAll();
    this.terminal?.deleted();
    this.setStatus("missing", "This workspace was deleted"); // its template is gone with it
    note(`Workspace ${this.ref.projectId}/${this.ref.workspaceId} was deleted`);
  }

  async start() {
    if (!this.canWrite || !this.applyIds()) return;
    const ref = this.ref;
    this.deleted = false;
    const template = this.templates.wanted;
    const recreate = Boolean(template && this.template && template !== this.template);
    if (recreate) {
      // Its shells end with the old container; the tree and a new shell come back when the new one runs.
      this.recreating = true;
      this.running = false;
      this.tree.setAvailable(false, `Re-creating the workspace from the ${template} template; its files are kept.`);
    }
    try {
      await this._lifecycle("start", ref, "starting", async () => {
        const answer = await api.start(ref, template);
        if (ref !== this.ref || !answer.data) return;
        this._setTemplate(answer.data.template);
        if (recreate) note(`Workspace re-created from the ${answer.data.template} template, files kept`);
        const theme = this.themeName();
        if (answer.data.theme !== theme) api.theme(ref, theme).catch(showError);
      });
    } finally {
      this.recreating = false;
    }
  }

  async stop() {
    if (!this.ref || !this.canWrite) return;
    const shown = this.ref;
    // Only the workspace the fields show: other (valid) ids typed there are switched to first, and not stopped.
    if (!this.applyIds() || this.ref !== shown) return;
    const ref = this.ref;
    if (this.editor.dirtyCount > 0) toast("Unsaved changes stay in the editor; Save writes them while stopped", "info");
    await this._lifecycle("stop", ref, this.status, () => api.stop(ref));
  }

  // --- VS Code (workspaces running the code-server image) -----------------------------------------------------

  _setIde(url) {
    const button = $("open-vscode");
    this.ideUrl = url;
    button.disabled = !url;
    button.title = url
      ? "Open this workspace's VS Code in a new tab"
      : this.canWrite
        ? "needs the code-server image"
        : "VS Code needs a token that may write";
  }

  /** Ask /status for what the badge does not say (what keeps it running, when it stops, why it stopped) and VS Code. */
  async refreshDetails() {
    const ref = this.ref;
    if (!ref) return;
    try {
      const { data } = await api.status(ref);
      if (ref !== this.ref) return;
      this._setTemplate(data.template);
      this._setIde(data.running && this.canWrite ? data.ideUrl : null);
      this._showDetails(data);
    } catch {
      if (ref === this.ref) {
        this._setIde(null);
        this._showDetails(null);
      }
    }
  }

  _showDetails(data) {
    const own = { ownTerminalId: this.terminal?.id, ownRunId: this.runBox.current?.id };
    const words = this.deleted ? DELETED : describeStatus(data, own);
    renderStatus($("status-detail"), words);
  }

  async openIde() {
    if (!this.ideUrl) return;
    const tab = window.open("about:blank", "_blank"); // opened in the click, so no pop-up blocker stops it
    if (tab) tab.opener = null;
    try {
      const { data } = await api.status(this.ref);
      // No password to show: the backend signs the tab in to code-server itself.
      note(data.ideReady ? "VS Code opened in a new tab" : "VS Code is still starting; it opens when ready");
      if (tab) tab.location.href = `${data.ideUrl}?token=${encodeURIComponent(getToken())}`;
    } catch (err) {
      tab?.close();
      showError(err);
    }
  }
}
