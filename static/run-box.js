// The run box: one command at a time over the live channel (exec, tty false). Its stdout and stderr stream into two
// panes as they come, the exit code and how long it ran show when it ends, and Stop sends SIGINT, then SIGKILL when
// the command still runs a few seconds later (a second click kills at once).
//
// The command belongs to the workspace it was started in. Switching to another workspace leaves it running unseen
// (the server ends it once nobody has followed it for IDE_PROCESS_DETACHED_TTL seconds); switching back or reloading
// the page follows it again (its id is kept in sessionStorage per workspace), with the output the server still keeps.
// Each pane keeps the last KEEP_CHARS characters, so a flood of output cannot freeze the page.

import { note, showError } from "./notify.js";
import { $, uid } from "./util.js";

const KEEP_CHARS = 256 * 1024; // per stream
const KILL_AFTER_MS = 3_000;
const FLUSH_MS = 100; // at most this long between a chunk's arrival and the pane showing it
const RUN_KEY = "ide-backend.run";
const STOP_TITLE = `Stop the command: SIGINT, then SIGKILL if it still runs ${KILL_AFTER_MS / 1000} s later`;

const keyOf = (ref) => `${RUN_KEY}.${ref.projectId}/${ref.workspaceId}`;

function loadRun(ref) {
  try {
    const saved = JSON.parse(sessionStorage.getItem(keyOf(ref)) || "null");
    return saved && typeof saved.id === "string" ? saved : null;
  } catch {
    return null;
  }
}

function saveRun(ref, run) {
  try {
    if (run) sessionStorage.setItem(keyOf(ref), JSON.stringify(run));
    else sessionStorage.removeItem(keyOf(ref));
  } catch {
    // storage off: the box just won't come back after a reload
  }
}

/** "850 ms", "12.3 s", "4 min 05 s". */
export function formatDuration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}

/** One output pane: chunks are batched (one DOM write per flush) and only the last KEEP_CHARS are kept. */
class Pane {
  constructor(element) {
    this.element = element;
    this.timer = 0;
    this.frame = 0;
    this.clear();
  }

  clear() {
    clearTimeout(this.timer);
    cancelAnimationFrame(this.frame);
    this.timer = 0;
    this.text = ""; // what the pane shows
    this.pending = []; // chunks not shown yet
    this.pendingChars = 0;
    this.dropped = 0; // characters cut from the front
    this.redraw = false; // everything shown is cut: draw anew rather than append
    this.element.textContent = "";
  }

  append(data, onFlush) {
    this.pending.push(data);
    this.pendingChars += data.length;
    if (this.pendingChars > KEEP_CHARS * 2) {
      // More is waiting than the pane keeps: what is shown and the head of what waits will all be cut.
      const joined = this.pending.join("");
      this.dropped += this.text.length + joined.length - KEEP_CHARS;
      this.text = "";
      this.pending = [joined.slice(-KEEP_CHARS)];
      this.pendingChars = KEEP_CHARS;
      this.redraw = true;
    }
    if (this.timer) return;
    const flush = () => {
      clearTimeout(this.timer);
      cancelAnimationFrame(this.frame);
      this.timer = 0;
      this.flush();
      onFlush();
    };
    // A frame when the tab is shown; the timer when frames are held back (a tab in the background).
    this.frame = requestAnimationFrame(flush);
    this.timer = setTimeout(flush, FLUSH_MS);
  }

  flush() {
    if (!this.pending.length) return;
    const el = this.element;
    const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
    const added = this.pending.join("");
    this.pending = [];
    this.pendingChars = 0;
    if (!this.redraw && this.text.length + added.length <= KEEP_CHARS) {
      this.text += added;
      el.append(added);
    } else {
      const all = this.text + added;
      this.dropped += Math.max(0, all.length - KEEP_CHARS);
      this.text = all.slice(-KEEP_CHARS);
      el.textContent = this.text;
      this.redraw = false;
    }
    if (atBottom) el.scrollTop = el.scrollHeight;
  }
}

export class RunBox {
  /**
   * @param {object} parts
   * @param {import("./workspace.js").Workspace} parts.workspace
   * @param {import("./live.js").LiveChannel} parts.live
   * @param {import("./tree.js").FileTree} parts.tree refreshed after a command, which may have changed files
   */
  constructor({ workspace, live, tree }) {
    this.workspace = workspace;
    this.live = live;
    this.tree = tree;
    this.ref = null;
    this.current = null; // {id, ref, command, startedAt, running, stopping, killTimer, durationMs}
    this.panes = { stdout: new Pane($("run-stdout")), stderr: new Pane($("run-stderr")) };
    this.serverTruncated = false;
  }

  get running() {
    return Boolean(this.current && this.current.running);
  }

  /** The page shows another workspace: stop following this one's command (it runs on) and follow that one's. */
  setWorkspace(ref) {
    const cur = this.current;
    if (cur) {
      clearTimeout(cur.killTimer);
      this.live.forget(cur.id);
      if (cur.running) note(`The command in ${cur.ref.projectId}/${cur.ref.workspaceId} runs on; back there, it shows`);
    }
    this.current = null;
    this.ref = ref;
    this._reset();
    this._showIdle();
    const saved = loadRun(ref);
    if (saved) this._follow({ ...saved, ref }, { attach: true });
    this.update();
  }

  /** Run the command typed, in the workspace the page shows (and the fields show: typed ids are switched to first). */
  run(event) {
    event.preventDefault();
    const command = $("run-command").value.trim();
    if (!command || this.running || !this.workspace.canWrite) return;
    const shown = this.workspace.ref;
    if (!this.workspace.applyIds() || this.workspace.ref !== shown) return;
    if (!this.workspace.running) return;
    const ref = this.workspace.ref;
    if (this.current) this.live.forget(this.current.id);
    this._reset();
    const run = { id: "run-" + uid(), command, startedAt: Date.now() };
    saveRun(ref, run);
    this._follow({ ...run, ref }, { attach: false });
    this.live.exec(
      { id: run.id, projectId: ref.projectId, workspaceId: ref.workspaceId, command, tty: false },
      this._handler(this.current),
    );
    this.update();
  }

  /** Stop: SIGINT, and SIGKILL when the command still runs KILL_AFTER_MS later; clicked again, SIGKILL at once. */
  stop() {
    const cur = this.current;
    if (!cur || !cur.running || !this._fieldsShow(cur.ref)) return;
    if (cur.stopping) {
      this._kill(cur);
      return;
    }
    cur.stopping = true;
    this.live.send({ type: "signal", id: cur.id, signal: "SIGINT" });
    this._chip("running", "stopping…", "SIGINT sent");
    cur.killTimer = setTimeout(() => this._kill(cur), KILL_AFTER_MS);
    this.update();
  }

  _kill(cur) {
    clearTimeout(cur.killTimer);
    if (this.current !== cur || !cur.running) return;
    cur.killed = true;
    this.live.send({ type: "signal", id: cur.id, signal: "SIGKILL" });
    this._chip("running", "killing…", "SIGKILL sent");
    this.update();
  }

  /** Run and Stop follow the workspace's state, the command's, and the ids in the fields. */
  update() {
    const run = $("run");
    const stop = $("run-stop");
    const problem = this.workspace.idsProblem();
    const fieldsDiffer = !problem && this.workspace.ref && !this._fieldsShow(this.workspace.ref);
    const running = this.running;
    run.disabled = Boolean(problem) || running || (!this.workspace.running && !fieldsDiffer);
    run.title =
      problem ||
      (running
        ? "A command is running: stop it first"
        : fieldsDiffer
          ? "Switch to the workspace typed above first"
          : this.workspace.running
            ? "Run the command in the workspace"
            : "Start the workspace first");
    stop.disabled = !running || Boolean(problem) || fieldsDiffer;
    const stopping = running && this.current.stopping;
    $("run-stop-label").textContent = stopping ? "Kill" : "Stop";
    stop.title = !running
      ? "Nothing runs"
      : problem || fieldsDiffer
        ? `The command runs in ${this.current.ref.projectId}/${this.current.ref.workspaceId}: switch back to stop it`
        : stopping
          ? "Still running: kill it now (SIGKILL)"
          : STOP_TITLE;
  }

  /** Whether the top bar's fields show this workspace (not other ids typed and not applied yet). */
  _fieldsShow(ref) {
    return $("project-id").value.trim() === ref.projectId && $("workspace-id").value.trim() === ref.workspaceId;
  }

  _follow(run, { attach }) {
    // attachedLate: followed again after a switch or a reload; its end may have come while the page was away.
    const cur = { ...run, running: true, stopping: false, killTimer: 0, attachedLate: attach };
    this.current = cur;
    if (!$("run-command").value.trim() || attach) $("run-command").value = run.command;
    this._chip("running", attach ? "attaching…" : "running…", run.command);
    $("run-time").textContent = "";
    if (attach) this.live.attach(run.id, this._handler(cur));
  }

  /** What the live channel tells about command `cur`; anything for a command no longer shown is dropped. */
  _handler(cur) {
    const mine = () => this.current === cur;
    const flushed = () => this._showTruncation();
    return {
      onStarted: () => {
        if (!mine()) return;
        cur.startedAt = Date.now();
        saveRun(cur.ref, { id: cur.id, command: cur.command, startedAt: cur.startedAt });
        this._chip("running", "running…", cur.command);
        this._detailsSoon();
      },
      onData: (data, stream) => mine() && this.panes[stream === "stderr" ? "stderr" : "stdout"].append(data, flushed),
      onAttached: (message) => {
        if (!mine()) return;
        cur.attachedLate = !message.running;
        if (message.running) this._chip("running", "running…", cur.command);
      },
      onGap: () => {
        if (!mine()) return;
        this.serverTruncated = true; // the server no longer kept the head of the output
        this._showTruncation();
      },
      onExit: (message) => mine() && this._exited(cur, message),
      onError: (message) => {
        if (!mine() || this.live.isFollowing(cur.id)) return;
        cur.running = false;
        clearTimeout(cur.killTimer);
        saveRun(cur.ref, null);
        if (message.code === "not_found") {
          // Followed again after a switch or a reload, but the server no longer has it: nothing to show.
          this.current = null;
          this._reset();
          this._showIdle();
        } else {
          this._chip("bad", "failed", message.message);
          showError(message);
        }
        this.update();
      },
    };
  }

  _exited(cur, message) {
    clearTimeout(cur.killTimer);
    cur.running = false;
    for (const pane of Object.values(this.panes)) pane.flush();
    const known = cur.durationMs !== undefined;
    const durationMs = known ? cur.durationMs : cur.startedAt && !cur.attachedLate ? Date.now() - cur.startedAt : null;
    saveRun(cur.ref, { id: cur.id, command: cur.command, startedAt: cur.startedAt, durationMs });
    const code = message.exitCode;
    const why = message.reason ? message.reason.replace(/_/g, " ") : cur.killed ? "killed by Stop" : "";
    this._chip(code === 0 ? "ok" : "bad", code === null ? "ended" : `exit ${code}`, why || cur.command);
    const exit = $("run-exit");
    exit.dataset.exitCode = code === null ? "" : String(code);
    const time = $("run-time");
    time.textContent = [durationMs === null ? "" : formatDuration(durationMs), why].filter(Boolean).join(" · ");
    time.dataset.durationMs = durationMs === null ? "" : String(durationMs);
    if (message.truncated) this.serverTruncated = true;
    this._showTruncation();
    if (this.workspace.isCurrent(cur.ref) && this.workspace.running) this.tree.refresh();
    this._detailsSoon();
    this.update();
  }

  /** What keeps the workspace running changed (this command runs, or no longer): the status area follows. */
  _detailsSoon() {
    setTimeout(() => this.workspace.running && this.workspace.refreshDetails(), 300);
  }

  _reset() {
    for (const pane of Object.values(this.panes)) pane.clear();
    this.serverTruncated = false;
    this._showTruncation();
    $("run-time").textContent = "";
  }

  _showIdle() {
    const exit = $("run-exit");
    exit.hidden = true;
    exit.textContent = "";
    exit.dataset.exitCode = "";
  }

  _chip(kind, text, title) {
    const exit = $("run-exit");
    exit.hidden = false;
    exit.className = `chip ${kind}`;
    exit.textContent = text;
    exit.title = title || "";
  }

  _showTruncation() {
    const cut = [];
    for (const [name, pane] of Object.entries(this.panes)) {
      if (pane.dropped) cut.push(`the first ${Math.ceil(pane.dropped / 1024)} KiB of ${name}`);
    }
    const el = $("run-truncated");
    if (!cut.length && !this.serverTruncated) {
      el.hidden = true;
      el.textContent = "";
      return;
    }
    el.hidden = false;
    el.textContent = cut.length
      ? `output truncated: ${cut.join(" and ")} dropped (the box keeps the last ${KEEP_CHARS / 1024} KiB of each)`
      : "output truncated: the start is no longer kept by the server";
  }
}
