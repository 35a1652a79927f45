// The demo page: pick a workspace and its template, start/stop it, browse and edit its files, a terminal, one-off
// commands and a theme. Plain ES modules, no framework. The token is never written to the console.
//
// This module makes the page's parts and wires them to the page: workspace.js (ids, status, start/stop),
// workspace-list.js (the project's workspaces), tree.js + file-actions.js (explorer), editor.js (with its tabs in
// editor-tabs.js, conflicts in conflict.js, Monaco in monaco.js), terminal.js, run-box.js, theme-picker.js,
// template-picker.js, over live.js (websocket) and api.js (REST); scope.js fits the page to what the token covers;
// notify.js shows toasts and notes.

import { adoptTokenFromUrl, api, clearToken, getToken, setUnauthorizedHandler, wsUrl } from "./api.js";
import { Editor } from "./editor.js";
import { FileActions } from "./file-actions.js";
import { LiveChannel } from "./live.js";
import { note, showError, toast } from "./notify.js";
import { PortsPanel } from "./ports.js";
import { RunBox } from "./run-box.js";
import { applyScope, idsFor, isExpired, readScope, rejectedMessage, sameScope } from "./scope.js";
import { TemplatePicker } from "./template-picker.js";
import { ShellTerminal } from "./terminal.js";
import { ThemePicker } from "./theme-picker.js";
import { applyPageTheme } from "./themes.js";
import { askForToken } from "./token-dialog.js";
import { FileTree } from "./tree.js";
import { $ } from "./util.js";
import { loadIds, Workspace } from "./workspace.js";
import { WorkspaceList } from "./workspace-list.js";

// --- token ---------------------------------------------------------------------------------------------------

let scope = null; // what the token covers (scope.js); null: the operator's token
let expiryTimer = 0;
let asking = null;

/** The server refused the token (or it expired): ask for another, saying why. */
function tokenRejected(error = null) {
  if (asking) return;
  const message = rejectedMessage(scope, Date.now(), /expired/i.test((error && error.message) || ""));
  clearToken();
  live.close();
  asking = askForToken(message).then(() => {
    asking = null;
    const next = readScope(getToken());
    if (!sameScope(next, scope)) {
      window.location.reload(); // another workspace or other rights: the page starts over, fitted to them
      return;
    }
    scope = next;
    if (isExpired(scope)) {
      tokenRejected();
      return;
    }
    watchExpiry();
    live.connect();
    workspace.resubscribe();
    if (!templates.known.length) templates.load(); // refused with the token before
  });
}

/** Ask for a new token the moment this one expires, rather than at the next refused request. */
function watchExpiry() {
  clearTimeout(expiryTimer);
  if (!scope || scope.expiresAt === null) return;
  const wait = scope.expiresAt - Date.now();
  if (wait < 2 ** 31 - 1) expiryTimer = setTimeout(() => tokenRejected(), Math.max(0, wait));
}

/** A token from the address bar, the session or the dialog that has not expired; its scope fits the page. */
async function acceptToken() {
  if (!adoptTokenFromUrl()) await askForToken();
  scope = readScope(getToken());
  while (isExpired(scope)) {
    const message = rejectedMessage(scope);
    clearToken();
    await askForToken(message);
    scope = readScope(getToken());
  }
  applyScope(scope);
  workspace.scope = scope;
  terminal?.setWritable(workspace.canWrite);
  editor.canWrite = workspace.canWrite;
  tree.canWrite = workspace.canWrite;
  workspaces.setDeletable(workspace.canWrite);
  templates.render();
  watchExpiry();
}

function probeToken() {
  if (workspace.ref && getToken()) api.status(workspace.ref).catch(() => {});
}

// --- connection indicator ------------------------------------------------------------------------------------

function onLiveState(liveState, detail) {
  const conn = $("conn");
  conn.dataset.state = liveState;
  const text = {
    connecting: "connecting…",
    open: "connected",
    reconnecting: "reconnecting…",
    unauthorized: "token rejected",
    closed: "disconnected",
  }[liveState];
  conn.querySelector("span").textContent = text || liveState;
  conn.title = liveState === "reconnecting" && detail.delay ? `next try in ${Math.round(detail.delay)} ms` : "";
  if (liveState === "unauthorized") tokenRejected();
}

// --- the parts -----------------------------------------------------------------------------------------------

const live = new LiveChannel({
  url: wsUrl,
  onState: onLiveState,
  onStatus: (event) => {
    ports.onStatus(event);
    if (event.source !== "ports") workspace.onStatusEvent(event); // a port opened or closed: no news for the badge
  },
  onSubscribeError: (ref, error) => workspace.onSubscribeError(ref, error),
  onError: (error) => showError(error),
  // The browser does not say why a websocket was refused: ask the REST API, which answers 401 for a bad token.
  onFailedAttempt: () => probeToken(),
  ports: true, // the Ports panel follows the listening ports
});

const tree = new FileTree($("tree"), {
  onOpen: (path) => {
    tree.setActive(path);
    editor.open(path);
  },
  onError: showError,
  live, // the tree watches the workspace while it runs; the editor follows the same changes
  onFiles: (message) => editor.onFiles(message),
});

const editor = new Editor(
  {
    host: $("editor"),
    placeholder: $("editor-placeholder"),
    title: $("editor-title"),
    save: $("save"),
    cursor: $("cursor-pos"),
    language: $("language"),
    tabs: $("editor-tabs"),
    diff: {
      view: $("diff"),
      host: $("diff-host"),
      title: $("diff-title"),
      keep: $("diff-keep"),
      reload: $("diff-reload"),
      close: $("diff-close"),
    },
  },
  {
    onSaved: (path, info) => {
      // A stopped workspace takes the save too (sync writes through the engine); its tree waits for the next start.
      note(info.running === false ? `Saved ${path} (workspace stopped)` : `Saved ${path}`);
      if (workspace.running) tree.reveal(path).then(() => tree.setActive(path));
    },
    onActive: (path) => tree.setActive(path),
    onError: showError,
    onInfo: (message) => toast(message, "info"),
  },
);

let terminal = null; // made in main(); stays null when xterm.js is missing

const workspace = new Workspace({
  live,
  tree,
  editor,
  terminal: () => terminal,
  runBox: () => runBox,
  templates: () => templates,
  themeName: () => themes.current.name,
  onChange: (why) => {
    ports.refresh();
    if (why === "switch") workspaces.render();
    workspaces.refresh({ soon: why === "status" });
  },
});
const workspaces = new WorkspaceList($("workspace-list"), { workspace });
const ports = new PortsPanel($("ports"), { workspace });
const themes = new ThemePicker($("theme"), { workspace, editor, terminal: () => terminal });
const templates = new TemplatePicker($("template"), { workspace });
const files = new FileActions({ workspace, tree, editor });
const runBox = new RunBox({ workspace, live, tree });

// --- wiring --------------------------------------------------------------------------------------------------

function wireUi() {
  $("ids").addEventListener("submit", (event) => {
    event.preventDefault();
    workspace.applyIds();
  });
  for (const id of ["project-id", "workspace-id"]) {
    $(id).addEventListener("change", () => workspace.applyIds());
    $(id).addEventListener("input", () => workspace.idsEdited());
  }
  $("start").addEventListener("click", () => workspace.start());
  $("stop").addEventListener("click", () => workspace.stop());
  $("open-vscode").addEventListener("click", () => workspace.openIde());
  $("theme").addEventListener("change", (event) => themes.choose(event.target.value));
  $("template").addEventListener("change", (event) => templates.choose(event.target.value));
  $("refresh").addEventListener("click", () => tree.refresh());
  $("new-file").addEventListener("click", () => files.showNewFileForm());
  $("new-file-form").addEventListener("submit", (event) => files.createFile(event));
  $("new-file-path").addEventListener("keydown", (event) => {
    if (event.key === "Escape") $("new-file-form").hidden = true;
  });
  $("new-file-path").addEventListener("blur", () => {
    setTimeout(() => {
      if (document.activeElement !== $("new-file-path")) $("new-file-form").hidden = true;
    }, 150);
  });
  $("delete").addEventListener("click", () => files.deleteSelected());
  $("workspaces-refresh").addEventListener("click", () => workspaces.refresh());
  $("workspaces-more").addEventListener("click", () => workspaces.more());
  $("run-form").addEventListener("submit", (event) => runBox.run(event));
  $("run-stop").addEventListener("click", () => runBox.stop());
  $("terminal-restart").addEventListener("click", () => {
    // Only in the workspace the fields show: other ids typed there are switched to first.
    const shown = workspace.ref;
    if (!workspace.applyIds() || workspace.ref !== shown) return;
    if (!workspace.running) {
      toast("Start the workspace first", "info");
      return;
    }
    terminal?.newShell();
    terminal?.focus();
  });
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") {
      event.preventDefault();
      editor.save();
    }
  });
  window.addEventListener("beforeunload", (event) => {
    if (editor.dirtyCount > 0) event.preventDefault();
  });
}

const TERMINAL_STATE_TEXT = {
  idle: "idle",
  resuming: "reattaching…",
  starting: "starting…",
  live: "bash",
  reconnecting: "reconnecting…",
  exited: "exited",
};

async function main() {
  themes.fill();
  applyPageTheme(themes.current);
  wireUi();
  setUnauthorizedHandler((error) => tokenRejected(error));

  try {
    terminal = new ShellTerminal($("terminal"), live, {
      onState: (s) => {
        const chip = $("terminal-state");
        chip.dataset.state = s;
        chip.textContent = TERMINAL_STATE_TEXT[s] || s;
        chip.title = s === "live" && !workspace.canWrite ? "read-only: this token may only watch" : "";
        // What keeps the workspace running changes with the terminal attached or gone.
        if (s === "live" || s === "exited") setTimeout(() => workspace.running && workspace.refreshDetails(), 300);
      },
      onError: (message) => toast(message),
    });
  } catch (err) {
    showError(err);
  }
  themes.apply(themes.current);

  $("token-dialog").addEventListener("cancel", (event) => {
    if (!getToken()) event.preventDefault();
  });
  await acceptToken();
  const saved = loadIds();
  const ids = idsFor(scope, saved);
  // A token for a whole project, opened for the first time: its first workspace rather than one that may not exist.
  workspaces.autoPick = Boolean(scope && !scope.workspaceId && saved.projectId !== scope.projectId);
  live.connect();
  workspace.switchTo(ids);
  templates.load();
  probeToken();

  editor
    .init(themes.current)
    .then(() => editor.setTheme(themes.current))
    .catch(showError);
}

// A handle for trying things out from the console and for the end-to-end tests (nothing secret in it).
window.ide = {
  get status() {
    return workspace.status;
  },
  get ref() {
    return workspace.ref;
  },
  get editorReady() {
    return editor.ready;
  },
  get terminalState() {
    return terminal ? terminal.state : "missing";
  },
  get terminalSize() {
    return terminal ? { cols: terminal.term.cols, rows: terminal.term.rows } : null;
  },
  /** The terminal's screen as text, row by row (the buffer shown: the alternate one for full-screen programs). */
  get terminalScreen() {
    if (!terminal) return [];
    const buffer = terminal.term.buffer.active;
    const rows = [];
    for (let y = buffer.viewportY; y < buffer.viewportY + terminal.term.rows; y++) {
      rows.push(buffer.getLine(y)?.translateToString(true) ?? "");
    }
    return rows;
  },
  get terminalId() {
    return terminal ? terminal.id : null;
  },
  get scope() {
    return scope;
  },
  get connects() {
    return live.connects;
  },
  get hasToken() {
    return Boolean(getToken());
  },
  drop: () => live.drop(),
};

main();
