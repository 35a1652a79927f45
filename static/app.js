// The demo page: pick a workspace, start/stop it, browse and edit its files, a terminal, one-off commands and a
// theme. Plain ES modules, no framework. The token is never written to the console.
//
// This module makes the page's parts and wires them to the page: workspace.js (ids, status, start/stop),
// tree.js + file-actions.js (explorer), editor.js, terminal.js, run-box.js, theme-picker.js, over live.js (websocket)
// and api.js (REST); notify.js shows toasts and notes.

import { adoptTokenFromUrl, api, clearToken, getToken, setUnauthorizedHandler, wsUrl } from "./api.js";
import { Editor } from "./editor.js";
import { FileActions } from "./file-actions.js";
import { LiveChannel } from "./live.js";
import { note, showError, toast } from "./notify.js";
import { RunBox } from "./run-box.js";
import { ShellTerminal } from "./terminal.js";
import { ThemePicker } from "./theme-picker.js";
import { applyPageTheme } from "./themes.js";
import { askForToken } from "./token-dialog.js";
import { FileTree } from "./tree.js";
import { $ } from "./util.js";
import { loadIds, Workspace } from "./workspace.js";

// --- token ---------------------------------------------------------------------------------------------------

let asking = null;
function tokenRejected() {
  if (asking) return;
  clearToken();
  live.close();
  asking = askForToken("That token was not accepted. Paste the current one.").then(() => {
    asking = null;
    live.connect();
    workspace.resubscribe();
  });
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
  onStatus: (event) => workspace.onStatusEvent(event),
  onSubscribeError: (ref, error) => workspace.onSubscribeError(ref, error),
  onError: (error) => showError(error),
  // The browser does not say why a websocket was refused: ask the REST API, which answers 401 for a bad token.
  onFailedAttempt: () => probeToken(),
});

const tree = new FileTree($("tree"), {
  onOpen: (path) => {
    tree.setActive(path);
    editor.open(path);
  },
  onError: showError,
});

const editor = new Editor(
  {
    host: $("editor"),
    placeholder: $("editor-placeholder"),
    title: $("editor-title"),
    save: $("save"),
    cursor: $("cursor-pos"),
    language: $("language"),
  },
  {
    onSaved: (path) => {
      note(`Saved ${path}`);
      tree.reveal(path).then(() => tree.setActive(path));
    },
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
  themeName: () => themes.current.name,
});
const themes = new ThemePicker($("theme"), { workspace, editor, terminal: () => terminal });
const files = new FileActions({ workspace, tree, editor });
const runBox = new RunBox({ workspace, tree });

// --- wiring --------------------------------------------------------------------------------------------------

function wireUi() {
  $("ids").addEventListener("submit", (event) => {
    event.preventDefault();
    workspace.applyIds();
  });
  for (const id of ["project-id", "workspace-id"]) $(id).addEventListener("change", () => workspace.applyIds());
  $("start").addEventListener("click", () => workspace.start());
  $("stop").addEventListener("click", () => workspace.stop());
  $("open-vscode").addEventListener("click", () => workspace.openIde());
  $("theme").addEventListener("change", (event) => themes.choose(event.target.value));
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
  $("run-form").addEventListener("submit", (event) => runBox.run(event));
  $("terminal-restart").addEventListener("click", () => {
    if (!workspace.running) {
      toast("Start the workspace first", "info");
      return;
    }
    terminal?.startShell();
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
  starting: "starting…",
  live: "bash",
  reconnecting: "reconnecting…",
  exited: "exited",
};

async function main() {
  themes.fill();
  applyPageTheme(themes.current);
  wireUi();
  setUnauthorizedHandler(() => tokenRejected());

  try {
    terminal = new ShellTerminal($("terminal"), live, {
      onState: (s) => {
        const chip = $("terminal-state");
        chip.dataset.state = s;
        chip.textContent = TERMINAL_STATE_TEXT[s] || s;
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
  if (!adoptTokenFromUrl()) await askForToken();
  const ids = loadIds();
  live.connect();
  workspace.switchTo(ids);
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
  get connects() {
    return live.connects;
  },
  get hasToken() {
    return Boolean(getToken());
  },
  drop: () => live.drop(),
};

main();
