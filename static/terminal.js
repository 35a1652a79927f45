// An interactive shell in the workspace: xterm.js + the fit addon, over the live channel (exec with tty).
//
// The shell outlives the page: its id is kept in localStorage per workspace, and when the workspace runs the page
// asks the server for the workspace's processes and attaches to that shell again, its screen redrawn by the server
// (docs/protocol.md, "attach" with screen). When that one no longer runs, or the id was lost (storage cleared,
// another browser), it attaches to the workspace's newest running shell: tabs of one workspace share it, each typing
// and seeing what all type. Only when no shell runs does it start one. With a read-only token the terminal takes no
// input and starts nothing: it shows the workspace's running shell, if there is one.

import { uid } from "./util.js";

const TERMINAL_KEY = "ide-backend.terminal";
const keyOf = (ref) => `${TERMINAL_KEY}.${ref.projectId}/${ref.workspaceId}`;

/** The id of the shell this browser last opened in the workspace, or "". */
function savedId(ref) {
  try {
    return localStorage.getItem(keyOf(ref)) || "";
  } catch {
    return "";
  }
}

function saveId(ref, id) {
  try {
    if (id) localStorage.setItem(keyOf(ref), id);
    else localStorage.removeItem(keyOf(ref));
  } catch {
    // storage full or off: the shell just won't come back after a reload
  }
}

export class ShellTerminal {
  /**
   * @param {HTMLElement} host
   * @param {import("./live.js").LiveChannel} live
   * @param {{onState?: (state: string) => void, onError?: (message: string) => void}} hooks
   */
  constructor(host, live, { onState, onError } = {}) {
    this.host = host;
    this.live = live;
    this.onState = onState || (() => {});
    this.onError = onError || (() => {});
    this.ref = null;
    this.id = null;
    this.state = "idle";
    this.canWrite = true;
    this.generation = 0; // bumped on every workspace switch, so a late answer for the previous one is dropped
    const { Terminal } = window;
    const FitAddon = window.FitAddon && window.FitAddon.FitAddon;
    if (typeof Terminal !== "function" || typeof FitAddon !== "function") {
      throw new Error("xterm.js is missing (run scripts/frontend.sh to install the front-end packages)");
    }
    this.term = new Terminal({
      fontFamily: '"JetBrains Mono", "Cascadia Code", "Fira Code", Menlo, Consolas, "DejaVu Sans Mono", monospace',
      fontSize: 13,
      lineHeight: 1.15,
      cursorBlink: true,
      scrollback: 5000,
      allowProposedApi: false,
    });
    this.fit = new FitAddon();
    this.term.loadAddon(this.fit);
    this.term.open(host);
    this.term.onData((data) => this._typed(data));
    this.term.onResize(({ cols, rows }) => this._sendSize(cols, rows));
    let pending = 0;
    const refit = () => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(() => this.refit());
    };
    window.addEventListener("resize", refit);
    new ResizeObserver(refit).observe(host);
    this.refit();
  }

  refit() {
    if (!this.host.isConnected || this.host.clientWidth === 0 || this.host.clientHeight === 0) return;
    try {
      this.fit.fit();
    } catch {
      // not laid out yet
    }
  }

  setTheme(theme) {
    this.term.options.theme = theme;
  }

  /** Whether typing reaches the shell and new shells may be started (a read-only token: neither). */
  setWritable(canWrite) {
    this.canWrite = canWrite;
    this.term.options.disableStdin = !canWrite;
    this.term.options.cursorBlink = canWrite;
  }

  /** The workspace to run shells in. The previous one's shell keeps running, detached: back there, it is found. */
  setWorkspace(ref) {
    this.detach();
    this.generation += 1;
    this.ref = ref;
    this.term.reset();
    this._setState("idle");
  }

  /**
   * The workspace runs: attach to the shell this browser opened there before (a reload, a switch back), else to its
   * newest running shell (another tab's, or this browser's whose id was lost); start a new one when there is none.
   */
  async resume() {
    if (!this.ref || ["starting", "live", "reconnecting", "resuming"].includes(this.state)) return;
    const { ref, generation } = this;
    this._setState("resuming");
    let items = [];
    try {
      items = await this.live.list(ref);
    } catch (err) {
      if (err && err.code === "forbidden") this.onError(err.message);
      // else: an older server, or no answer in time; a new shell still works
    }
    if (generation !== this.generation || this.state !== "resuming") return;
    const shells = items.filter((p) => p.tty && p.running);
    const mine = shells.find((p) => p.id === savedId(ref));
    const newest = [...shells].sort((a, b) => String(b.startedAt).localeCompare(String(a.startedAt)))[0];
    const found = mine || newest;
    if (found) {
      if (this.canWrite) saveId(ref, found.id);
      this._attach(found.id);
    } else if (this.canWrite) {
      this.startShell();
    } else {
      this._setState("idle");
      this._say("no shell runs here, and a read-only token starts none");
    }
  }

  /**
   * A new shell for this page (the "New shell" button). The one shown is hung up when nobody else follows it, and
   * left running for the other tabs that do.
   */
  async newShell() {
    if (!this.ref || !this.canWrite) return;
    const { ref, id, generation } = this;
    let shared = false;
    if (id) {
      try {
        const items = await this.live.list(ref);
        shared = items.some((p) => p.id === id && p.running && p.attached > 1);
      } catch {
        // no answer: hang up as before
      }
    }
    if (generation !== this.generation || this.id !== id) return; // the page moved on meanwhile
    if (shared) this.detach();
    this.startShell();
  }

  startShell() {
    if (!this.ref || !this.canWrite) return;
    this.end();
    this.refit();
    const id = "term-" + uid();
    this.id = id;
    saveId(this.ref, id);
    this._setState("starting");
    this.live.exec(
      {
        id,
        projectId: this.ref.projectId,
        workspaceId: this.ref.workspaceId,
        command: "bash -l",
        tty: true,
        cols: this.term.cols,
        rows: this.term.rows,
      },
      this._handler(id),
    );
  }

  _attach(id) {
    this.id = id;
    this.term.reset();
    this.live.attach(id, this._handler(id), { screen: true });
  }

  /** What the live channel tells about shell `id`; anything for a shell no longer shown is dropped. */
  _handler(id) {
    const ref = this.ref;
    const mine = () => this.id === id;
    return {
      onStarted: () => {
        if (!mine()) return;
        this._setState("live");
        // The PTY size is applied at start; send it again in case the panel changed meanwhile.
        this._sendSize(this.term.cols, this.term.rows);
      },
      onData: (data) => mine() && this.term.write(data),
      onScreen: (message) => {
        if (!mine()) return;
        // The screen is drawn for the PTY's size: draw it at that size, then fit the panel (which resizes the PTY).
        this.term.reset();
        if (message.cols !== this.term.cols || message.rows !== this.term.rows) {
          this.term.resize(message.cols, message.rows);
        }
        this.term.write(message.data, () => this.refit());
      },
      onAttached: (message) => {
        if (!mine()) return;
        this._setState(message.running ? "live" : "exited");
        if (message.running) this._sendSize(this.term.cols, this.term.rows); // this page's size, not the last one's
      },
      onDetached: () => mine() && this.state !== "exited" && this._setState("reconnecting"),
      onGap: (firstSeq, since) => {
        if (!mine()) return;
        this.term.write(`\r\n\x1b[33m[${firstSeq - since - 1} chunks of output were lost while offline]\x1b[0m\r\n`);
      },
      onExit: (message) => {
        if (!mine()) return;
        this.id = null;
        if (savedId(ref) === id) saveId(ref, "");
        this._setState("exited");
        const code = message.exitCode === null ? "unknown" : message.exitCode;
        const again = this.canWrite ? "press Enter for a new one" : "this token may only read";
        const text = message.reason
          ? `[shell ended (${message.reason.replace(/_/g, " ")}); a new one opens when the workspace runs]`
          : `[shell exited with code ${code}: ${again}]`;
        this.term.write(`\r\n\x1b[2m${text}\x1b[0m\r\n`);
      },
      onError: (message) => {
        if (!mine()) return;
        if (!this.live.isFollowing(id)) {
          this.id = null;
          if (savedId(ref) === id) saveId(ref, "");
          this._setState("exited");
          this.term.write(`\r\n\x1b[31m[${message.message}]\x1b[0m\r\n`);
        }
        this.onError(message.message);
      },
    };
  }

  /** End the current shell (hang up) and stop following it. */
  end() {
    if (!this.id) return;
    const id = this.id;
    this.id = null;
    if (this.ref && savedId(this.ref) === id) saveId(this.ref, "");
    if (this.live.isFollowing(id)) {
      this.live.send({ type: "signal", id, signal: "SIGHUP" });
      this.live.forget(id);
    }
  }

  /** Stop following the current shell and leave it running (the server ends it if nobody attaches for a while). */
  detach() {
    if (!this.id) return;
    const id = this.id;
    this.id = null;
    this.live.forget(id);
  }

  /** The workspace was deleted: its shells ended with it. Clear the terminal and say so. */
  deleted() {
    if (this.id) this.live.forget(this.id, { tell: false });
    this.id = null;
    if (this.ref) saveId(this.ref, "");
    this.term.reset();
    this._say("the workspace was deleted, and its shells with it; a new one opens when it is started");
    this._setState("idle");
  }

  focus() {
    this.term.focus();
  }

  /** A line from the page (not the shell), dimmed and in brackets. */
  _say(text) {
    this.term.write(`\x1b[2m[${text}]\x1b[0m\r\n`);
  }

  _sendSize(cols, rows) {
    if (this.id && this.canWrite && this.state === "live") this.live.send({ type: "resize", id: this.id, cols, rows });
  }

  _typed(data) {
    if (!this.canWrite) return;
    if (this.id && ["live", "starting", "reconnecting"].includes(this.state)) {
      this.live.send({ type: "stdin", id: this.id, data });
    } else if (this.state === "exited" && data.includes("\r")) {
      this.startShell();
    }
  }

  _setState(state) {
    this.state = state;
    this.onState(state);
  }
}
