// An interactive shell in the workspace: xterm.js + the fit addon, over the live channel (exec with tty).

import { uid } from "./util.js";

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
    this.term.onResize(({ cols, rows }) => {
      if (this.id && this.state === "live") this.live.send({ type: "resize", id: this.id, cols, rows });
    });
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

  /** The workspace to run shells in; ends the shell of the previous one. */
  setWorkspace(ref) {
    this.end();
    this.ref = ref;
    this.term.reset();
    this._setState("idle");
  }

  /** Start a shell unless one is running or starting. */
  ensureShell() {
    if (!this.ref || ["starting", "live", "reconnecting"].includes(this.state)) return;
    this.startShell();
  }

  startShell() {
    if (!this.ref) return;
    this.end();
    this.refit();
    const id = "term-" + uid();
    this.id = id;
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
      {
        onStarted: () => {
          if (this.id !== id) return;
          this._setState("live");
          // The PTY size is applied at start; send it again in case the panel changed meanwhile.
          this.live.send({ type: "resize", id, cols: this.term.cols, rows: this.term.rows });
        },
        onData: (data) => this.id === id && this.term.write(data),
        onAttached: (message) => this.id === id && this._setState(message.running ? "live" : "exited"),
        onDetached: () => this.id === id && this.state !== "exited" && this._setState("reconnecting"),
        onGap: (firstSeq, since) => {
          if (this.id !== id) return;
          this.term.write(`\r\n\x1b[33m[${firstSeq - since - 1} chunks of output were lost while offline]\x1b[0m\r\n`);
        },
        onExit: (message) => {
          if (this.id !== id) return;
          this.id = null;
          this._setState("exited");
          const code = message.exitCode === null ? "unknown" : message.exitCode;
          const text = message.reason
            ? `[shell ended (${message.reason.replace(/_/g, " ")}); a new one opens when the workspace runs]`
            : `[shell exited with code ${code}: press Enter for a new one]`;
          this.term.write(`\r\n\x1b[2m${text}\x1b[0m\r\n`);
        },
        onError: (message) => {
          if (this.id !== id) return;
          if (!this.live.isFollowing(id)) {
            this.id = null;
            this._setState("exited");
            this.term.write(`\r\n\x1b[31m[${message.message}]\x1b[0m\r\n`);
          }
          this.onError(message.message);
        },
      },
    );
  }

  /** End the current shell (hang up) and stop following it. */
  end() {
    if (!this.id) return;
    const id = this.id;
    this.id = null;
    if (this.live.isFollowing(id)) {
      this.live.send({ type: "signal", id, signal: "SIGHUP" });
      this.live.forget(id);
    }
  }

  focus() {
    this.term.focus();
  }

  _typed(data) {
    if (this.id && (this.state === "live" || this.state === "starting" || this.state === "reconnecting")) {
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
