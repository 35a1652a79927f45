// The demo page: pick a workspace, start/stop it, browse and edit its files, a terminal, one-off commands and a
// theme. Plain ES modules, no framework. The token is never written to the console.

import { adoptTokenFromUrl, api, clearToken, getToken, setToken, setUnauthorizedHandler, wsUrl } from "./api.js";
import { Editor } from "./editor.js";
import { LiveChannel } from "./live.js";
import { ShellTerminal } from "./terminal.js";
import { applyPageTheme, DEFAULT_THEME, findTheme, terminalTheme, THEMES } from "./themes.js";
import { FileTree } from "./tree.js";
import { ID_PATTERN, dirname, h } from "./util.js";

const $ = (id) => document.getElementById(id);
const IDS_KEY = "ide-backend.ids";
const THEME_KEY = "ide-backend.theme";

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
const RUNNING_STATES = new Set(["running", "syncing"]);
const STOPPED_STATES = new Set(["exited", "died", "oom", "removed", "missing"]);

const state = {
  ref: null,
  status: "unknown",
  running: false,
  theme: findTheme(localStorage.getItem(THEME_KEY) || DEFAULT_THEME),
  busy: false,
  ideUrl: null,
};

// --- toasts: errors and notes, bottom right, out of the way ------------------------------------------------

function toast(message, kind = "error", timeout = kind === "error" ? 9000 : 3500) {
  const box = $("toasts");
  while (box.children.length >= 4) box.firstElementChild.remove();
  const close = h("button", { class: "toast-close", type: "button", "aria-label": "Dismiss" }, "×");
  const el = h(
    "div",
    { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", { class: "toast-dot" }),
    h("span", { class: "toast-text" }, message),
    close,
  );
  const remove = () => {
    el.classList.add("leaving");
    setTimeout(() => el.remove(), 180);
  };
  close.addEventListener("click", remove);
  box.append(el);
  if (timeout) setTimeout(remove, timeout);
}

let noteTimer = 0;
/** A short confirmation in the status bar (saved, deleted, theme set): seen, never in the way. */
function note(message) {
  const el = $("note");
  el.textContent = message;
  el.classList.add("shown");
  clearTimeout(noteTimer);
  noteTimer = setTimeout(() => el.classList.remove("shown"), 5000);
}

function showError(err) {
  if (err && err.name === "AbortError") return;
  toast((err && err.message) || String(err), "error");
}

// --- token ---------------------------------------------------------------------------------------------------

function askForToken(reason = "") {
  const dialog = $("token-dialog");
  const error = $("token-error");
  error.hidden = !reason;
  error.textContent = reason;
  $("token-input").value = "";
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
  return new Promise((resolve) => {
    $("token-form").onsubmit = (event) => {
      const token = $("token-input").value.trim();
      if (!token) {
        event.preventDefault();
        return;
      }
      setToken(token);
      $("token-input").value = "";
      resolve(token);
    };
  });
}

let asking = null;
function tokenRejected() {
  if (asking) return;
  clearToken();
  live.close();
  asking = askForToken("That token was not accepted. Paste the current one.").then(() => {
    asking = null;
    live.connect();
    resubscribe();
  });
}

// --- workspace ids -------------------------------------------------------------------------------------------

function loadIds() {
  try {
    const saved = JSON.parse(localStorage.getItem(IDS_KEY) || "null");
    if (saved && ID_PATTERN.test(saved.projectId) && ID_PATTERN.test(saved.workspaceId)) return saved;
  } catch {
    // ignore a broken entry
  }
  return { projectId: "demo", workspaceId: "main" };
}

/** The ids typed in the top bar; switches the page to them when they changed. Returns false when invalid. */
function applyIds() {
  const projectId = $("project-id").value.trim();
  const workspaceId = $("workspace-id").value.trim();
  for (const [label, value] of [["Project", projectId], ["Workspace", workspaceId]]) {
    if (!ID_PATTERN.test(value)) {
      toast(
        `${label} id: 1-63 letters, digits, '_', '-' or '.', starting with a letter or digit and not ending with '.'`,
      );
      return false;
    }
  }
  if (state.ref && state.ref.projectId === projectId && state.ref.workspaceId === workspaceId) return true;
  switchWorkspace({ projectId, workspaceId });
  return true;
}

function switchWorkspace(ref) {
  if (state.ref) live.unsubscribe(state.ref);
  state.ref = ref;
  state.running = false;
  localStorage.setItem(IDS_KEY, JSON.stringify(ref));
  $("project-id").value = ref.projectId;
  $("workspace-id").value = ref.workspaceId;
  $("status-ref").textContent = `${ref.projectId} / ${ref.workspaceId}`;
  document.title = `${ref.projectId}/${ref.workspaceId} · ide-backend`;
  editor.setWorkspace(ref);
  tree.setWorkspace(ref);
  terminal?.setWorkspace(ref);
  setStatus("unknown");
  live.subscribe(ref);
}

function resubscribe() {
  if (state.ref) live.subscribe(state.ref);
}

// --- status --------------------------------------------------------------------------------------------------

function setStatus(status, detail = "") {
  state.status = status;
  const badge = $("status-badge");
  badge.dataset.status = status;
  badge.textContent = STATUS_TEXT[status] || status;
  badge.title = detail || `Workspace status: ${STATUS_TEXT[status] || status}`;
  const running = RUNNING_STATES.has(status);
  $("start").disabled = state.busy || running || ["creating", "starting", "stopping"].includes(status);
  $("stop").disabled = state.busy || STOPPED_STATES.has(status) || status === "unknown";
  if (running && !state.running) {
    state.running = true;
    tree.setAvailable(true);
    tree.refresh();
    terminal?.ensureShell();
  } else if (!running && STOPPED_STATES.has(status)) {
    state.running = false;
    tree.setAvailable(false, status === "missing" ? "Start the workspace to browse its files." : "The workspace is stopped.");
  }
  $("run").disabled = !running;
  if (running) refreshIde();
  else setIde(null);
}

// --- VS Code (workspaces running the code-server image) -------------------------------------------------------

function setIde(url) {
  const button = $("open-vscode");
  state.ideUrl = url;
  button.disabled = !url;
  button.title = url ? "Open this workspace's VS Code in a new tab" : "needs the code-server image";
}

async function refreshIde() {
  const ref = state.ref;
  try {
    const { data } = await api.status(ref);
    if (ref === state.ref) setIde(data.running ? data.ideUrl : null);
  } catch {
    if (ref === state.ref) setIde(null);
  }
}

async function openIde() {
  if (!state.ideUrl) return;
  const tab = window.open("about:blank", "_blank"); // opened in the click, so no pop-up blocker stops it
  if (tab) tab.opener = null;
  try {
    const { data } = await api.status(state.ref);
    note(data.ideReady ? `VS Code password: ${data.password}` : "VS Code is still starting; it opens when ready");
    if (tab) tab.location.href = `${data.ideUrl}?token=${encodeURIComponent(getToken())}`;
  } catch (err) {
    tab?.close();
    showError(err);
  }
}

function onStatusEvent(event) {
  if (!state.ref || event.projectId !== state.ref.projectId || event.workspaceId !== state.ref.workspaceId) return;
  if (state.busy && event.source === "snapshot" && !RUNNING_STATES.has(event.status)) return; // start in flight
  const detail = event.exitCode !== undefined && event.exitCode !== null ? `exit code ${event.exitCode}` : "";
  setStatus(event.status, detail);
}

function onSubscribeError(ref, error) {
  if (!state.ref || ref.projectId !== state.ref.projectId || ref.workspaceId !== state.ref.workspaceId) return;
  if (error.code === "not_found") {
    if (!state.busy) setStatus("missing", "This workspace was never started here");
  } else {
    showError(error);
  }
}

/** After a failed start/stop: ask REST what the workspace is now, in case the live channel is down too. */
async function statusFromRest(ref) {
  try {
    const { data } = await api.status(ref);
    if (ref === state.ref) setStatus(data.running ? "running" : data.status === "removed" ? "removed" : "exited");
  } catch (err) {
    if (ref === state.ref) setStatus(err.status === 404 ? "missing" : state.status);
  }
}

/**
 * One start or stop: the page is busy and the button shows it meanwhile; a failure is shown and the status asked of
 * REST; afterwards the live channel follows the workspace again.
 */
async function lifecycle(button, ref, status, call) {
  state.busy = true;
  setStatus(status);
  $(button).classList.add("loading");
  try {
    await call();
  } catch (err) {
    showError(err);
    state.busy = false;
    await statusFromRest(ref);
  } finally {
    state.busy = false;
    $(button).classList.remove("loading");
    // The answer to subscribe is a snapshot of what the workspace is now; events follow.
    if (ref === state.ref) live.subscribe(ref);
  }
}

async function start() {
  if (!applyIds()) return;
  const ref = state.ref;
  await lifecycle("start", ref, "starting", async () => {
    const answer = await api.start(ref);
    const wanted = state.theme.name;
    if (ref === state.ref && answer.data && answer.data.theme !== wanted) {
      api.theme(ref, wanted).catch(showError);
    }
  });
}

async function stop() {
  if (!state.ref) return;
  const ref = state.ref;
  if (editor.dirtyCount > 0) toast("Unsaved changes stay in the editor; save them after the next start", "info");
  await lifecycle("stop", ref, state.status, () => api.stop(ref));
}

// --- theme ---------------------------------------------------------------------------------------------------

function fillThemePicker() {
  const select = $("theme");
  select.replaceChildren(...THEMES.map((t) => h("option", { value: t.name }, t.name)));
  select.value = state.theme.name;
}

function applyTheme(theme) {
  state.theme = theme;
  applyPageTheme(theme);
  editor.setTheme(theme);
  terminal?.setTheme(terminalTheme(theme));
}

async function chooseTheme(name) {
  const theme = findTheme(name);
  localStorage.setItem(THEME_KEY, theme.name);
  applyTheme(theme);
  if (!state.ref || state.status === "missing") {
    toast(`${theme.name} will be set in VS Code when the workspace starts`, "info");
    return;
  }
  try {
    await api.theme(state.ref, theme.name);
    note(`VS Code theme set to ${theme.name}`);
  } catch (err) {
    showError(err);
  }
}

// --- files ---------------------------------------------------------------------------------------------------

function showNewFileForm() {
  if (!state.running) {
    toast("Start the workspace first", "info");
    return;
  }
  const form = $("new-file-form");
  const input = $("new-file-path");
  const selected = tree.selected;
  const folder = selected ? (selected.type === "dir" ? selected.path : dirname(selected.path)) : "";
  form.hidden = false;
  input.value = folder ? folder + "/" : "";
  input.focus();
}

async function createFile(event) {
  event.preventDefault();
  const input = $("new-file-path");
  const path = input.value.trim().replace(/^\.?\/+/, "");
  if (!path || path.endsWith("/")) {
    toast("Type a file name, e.g. src/main.py");
    return;
  }
  const ref = state.ref;
  try {
    await api.read(ref, path);
    toast(`${path} already exists; opened it`, "info");
    $("new-file-form").hidden = true;
    await editor.open(path);
  } catch (err) {
    if (err.status !== 404) {
      showError(err);
      return;
    }
    try {
      await api.sync(ref, { [path]: "" });
    } catch (syncErr) {
      showError(syncErr);
      return;
    }
    $("new-file-form").hidden = true;
    await editor.openNew(path);
  }
  tree.setActive(path);
  await tree.reveal(path);
  tree.setActive(path);
  editor.focus();
}

function confirmDialog(title, text, okLabel) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

async function deleteSelected() {
  const target = tree.selected || (editor.path ? { path: editor.path, type: "file" } : null);
  if (!target) {
    toast("Select a file or folder in the explorer first", "info");
    return;
  }
  const what = target.type === "dir" ? "folder" : "file";
  const ok = await confirmDialog(`Delete ${target.path}?`, `The ${what} is removed from the workspace for good.`, "Delete");
  if (!ok) return;
  try {
    await api.remove(state.ref, [target.path]);
    editor.closeBelow(target.path);
    tree.selected = null;
    note(`Deleted ${target.path}`);
  } catch (err) {
    showError(err);
  }
  await tree.refresh();
}

// --- run box -------------------------------------------------------------------------------------------------

async function runCommand(event) {
  event.preventDefault();
  const command = $("run-command").value.trim();
  if (!command || !state.ref) return;
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
    const answer = await api.exec(state.ref, command, { timeout: 300 });
    $("run-stdout").textContent = answer.output;
    $("run-stderr").textContent = answer.error;
    const flags = [answer.timedOut ? "timed out" : "", answer.truncated ? "truncated" : ""].filter(Boolean);
    exit.className = "chip " + (answer.exitCode === 0 ? "ok" : "bad");
    exit.dataset.exitCode = String(answer.exitCode);
    exit.textContent = `exit ${answer.exitCode}` + (flags.length ? ` · ${flags.join(", ")}` : "");
    exit.title = answer.durationMs !== undefined ? `${answer.durationMs} ms` : "";
    if (answer.exitCode === 0 || answer.output || answer.error) tree.refresh();
  } catch (err) {
    exit.className = "chip bad";
    exit.textContent = "failed";
    showError(err);
  } finally {
    button.classList.remove("loading");
    button.disabled = !RUNNING_STATES.has(state.status);
  }
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

// --- start-up ------------------------------------------------------------------------------------------------

const live = new LiveChannel({
  url: wsUrl,
  onState: onLiveState,
  onStatus: onStatusEvent,
  onSubscribeError,
  onError: (error) => showError(error),
  // The browser does not say why a websocket was refused: ask the REST API, which answers 401 for a bad token.
  onFailedAttempt: () => probeToken(),
});

function probeToken() {
  if (state.ref && getToken()) api.status(state.ref).catch(() => {});
}

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

let terminal = null;

function wireUi() {
  $("ids").addEventListener("submit", (event) => {
    event.preventDefault();
    applyIds();
  });
  for (const id of ["project-id", "workspace-id"]) $(id).addEventListener("change", () => applyIds());
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", stop);
  $("open-vscode").addEventListener("click", openIde);
  $("theme").addEventListener("change", (event) => chooseTheme(event.target.value));
  $("refresh").addEventListener("click", () => tree.refresh());
  $("new-file").addEventListener("click", showNewFileForm);
  $("new-file-form").addEventListener("submit", createFile);
  $("new-file-path").addEventListener("keydown", (event) => {
    if (event.key === "Escape") $("new-file-form").hidden = true;
  });
  $("new-file-path").addEventListener("blur", () => {
    setTimeout(() => {
      if (document.activeElement !== $("new-file-path")) $("new-file-form").hidden = true;
    }, 150);
  });
  $("delete").addEventListener("click", deleteSelected);
  $("run-form").addEventListener("submit", runCommand);
  $("terminal-restart").addEventListener("click", () => {
    if (!state.running) {
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

async function main() {
  fillThemePicker();
  applyPageTheme(state.theme);
  wireUi();
  setUnauthorizedHandler(() => tokenRejected());

  try {
    terminal = new ShellTerminal($("terminal"), live, {
      onState: (s) => {
        const chip = $("terminal-state");
        chip.dataset.state = s;
        chip.textContent = { idle: "idle", starting: "starting…", live: "bash", reconnecting: "reconnecting…", exited: "exited" }[s] || s;
      },
      onError: (message) => toast(message),
    });
  } catch (err) {
    showError(err);
  }
  applyTheme(state.theme);

  $("token-dialog").addEventListener("cancel", (event) => {
    if (!getToken()) event.preventDefault();
  });
  if (!adoptTokenFromUrl()) await askForToken();
  const ids = loadIds();
  live.connect();
  switchWorkspace(ids);
  probeToken();

  editor
    .init(state.theme)
    .then(() => editor.setTheme(state.theme))
    .catch(showError);
}

// A handle for trying things out from the console and for the end-to-end tests (nothing secret in it).
window.ide = {
  get status() {
    return state.status;
  },
  get ref() {
    return state.ref;
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
