// The live channel (/api/v1/ws, see docs/protocol.md): one websocket that reconnects with backoff, keeps the
// status subscriptions, and re-attaches to every process it follows with the last `seq` it saw, so output is
// neither lost nor shown twice. It also lists a workspace's processes and attaches to one by id (a reloaded page
// finding its terminal), with the screen redrawn instead of replayed. It watches folders of workspaces for file
// changes (`watch`), and watches them again after a reconnect (telling the handler, since changes were missed).

const MIN_BACKOFF_MS = 300;
const MAX_BACKOFF_MS = 10_000;
const PING_EVERY_MS = 25_000;
const MAX_QUEUED = 2_000;
const LIST_TIMEOUT_MS = 15_000;

const refKey = (ref) => `${ref.projectId}/${ref.workspaceId}`;
const watchKey = (ref, path) => `${ref.projectId}/${ref.workspaceId}/${path}`;

export class LiveChannel {
  /**
   * @param {object} opts
   * @param {() => string} opts.url the websocket URL (with the token), asked again on every connect
   * @param {(state: string, detail?: object) => void} opts.onState "connecting" | "open" | "reconnecting" | "unauthorized"
   * @param {(event: object) => void} opts.onStatus every `status` event
   * @param {(ref: object, error: object) => void} opts.onSubscribeError a subscribe that was refused (e.g. not_found)
   * @param {(error: object) => void} opts.onError errors that belong to nothing else
   * @param {() => void} opts.onFailedAttempt a connection attempt that never opened (a wrong token looks like this)
   * @param {boolean} [opts.ports] subscriptions follow the listening ports too (status events with source "ports")
   */
  constructor({ url, onState, onStatus, onSubscribeError, onError, onFailedAttempt, ports = false }) {
    this.url = url;
    this.ports = ports;
    this.onFailedAttempt = onFailedAttempt || (() => {});
    this.onState = onState || (() => {});
    this.onStatus = onStatus || (() => {});
    this.onSubscribeError = onSubscribeError || (() => {});
    this.onError = onError || (() => {});
    this.ws = null;
    this.state = "idle";
    this.backoff = MIN_BACKOFF_MS;
    this.retryTimer = null;
    this.pingTimer = null;
    this.stopped = false;
    this.connects = 0;
    this.subscriptions = new Map(); // key -> ref
    // Requests the server answers without a process id (subscribe, list), in the order they went out: the server
    // handles them one after another, so an error without an id belongs to the oldest one still waiting.
    this.pending = []; // {kind: "subscribe", key} | {kind: "list", key, request}
    this.lists = new Set(); // list requests not answered yet: {ref, resolve, reject, timer, sent}
    this.processes = new Map(); // id -> {lastSeq, sent, handler}
    this.watches = new Map(); // "project/workspace/path" -> {ref, path, handler, sent}
    this.queue = []; // messages waiting for the socket
  }

  connect() {
    this.stopped = false;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    clearTimeout(this.retryTimer);
    this._setState(this.connects === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (err) {
      this.onError({ code: "network", message: `Cannot open the live channel: ${err.message}` });
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.opened = false;
    ws.onopen = () => this._opened(ws);
    ws.onmessage = (event) => this._receive(event.data);
    ws.onclose = (event) => this._closed(ws, event);
    ws.onerror = () => {}; // onclose follows and says what to do
  }

  /** Close the socket for good (no reconnect). */
  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000, "bye");
  }

  /** Drop the connection as a network failure would (used to try out reconnects). */
  drop() {
    if (this.ws) this.ws.close(4000, "dropped by the page");
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  send(message) {
    if (this.isOpen) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    if (this.queue.length < MAX_QUEUED) this.queue.push(message);
    return false;
  }

  // --- status subscriptions -------------------------------------------------------------------------------

  subscribe(ref) {
    const key = refKey(ref);
    this.subscriptions.set(key, { projectId: ref.projectId, workspaceId: ref.workspaceId });
    if (this.isOpen) this._sendSubscribe(key);
  }

  unsubscribe(ref) {
    const key = refKey(ref);
    if (this.subscriptions.delete(key) && this.isOpen) {
      this.ws.send(JSON.stringify({ type: "unsubscribe", projectId: ref.projectId, workspaceId: ref.workspaceId }));
    }
  }

  _sendSubscribe(key) {
    const ref = this.subscriptions.get(key);
    this.pending.push({ kind: "subscribe", key });
    this.ws.send(JSON.stringify(this.ports ? { type: "subscribe", ...ref, ports: true } : { type: "subscribe", ...ref }));
  }

  // --- file watches (docs/protocol.md, watch) -----------------------------------------------------------------

  /**
   * Follow the file changes below `path` ("" = everything) of a running workspace. `handler` gets onFiles(message),
   * onEnded(message) (the server ended it: the workspace stopped; watch again once it runs), onError(error), and
   * onResumed() after a reconnect (changes made meanwhile were missed: list again).
   */
  watch(ref, path, handler) {
    const entry = { ref: { projectId: ref.projectId, workspaceId: ref.workspaceId }, path, handler, sent: false };
    this.watches.set(watchKey(entry.ref, path), entry);
    if (this.isOpen) this._sendWatch(entry);
  }

  unwatch(ref, path) {
    const key = watchKey(ref, path);
    const entry = this.watches.get(key);
    if (!entry) return;
    this.watches.delete(key);
    if (this.isOpen && entry.sent) this.ws.send(JSON.stringify({ type: "unwatch", ...entry.ref, path }));
  }

  _sendWatch(entry) {
    entry.sent = true;
    this.pending.push({ kind: "watch", key: watchKey(entry.ref, entry.path) });
    this.ws.send(JSON.stringify({ type: "watch", ...entry.ref, path: entry.path }));
  }

  /** The processes of a workspace (the `processes` answer's items); asked again after a drop. */
  list(ref) {
    return new Promise((resolve, reject) => {
      const request = { ref: { projectId: ref.projectId, workspaceId: ref.workspaceId }, resolve, reject, sent: false };
      request.timer = setTimeout(() => {
        this._endList(request);
        reject({ code: "timeout", message: "The server did not list the workspace's processes in time" });
      }, LIST_TIMEOUT_MS);
      this.lists.add(request);
      if (this.isOpen) this._sendList(request);
    });
  }

  _sendList(request) {
    request.sent = true;
    this.pending.push({ kind: "list", key: refKey(request.ref), request });
    this.ws.send(JSON.stringify({ type: "list", ...request.ref }));
  }

  _endList(request) {
    clearTimeout(request.timer);
    this.lists.delete(request);
    const index = this.pending.findIndex((p) => p.request === request);
    if (index >= 0) this.pending.splice(index, 1);
  }

  // --- processes ----------------------------------------------------------------------------------------

  /**
   * Start a process and follow it. `handler` gets onStarted(), onData(data, stream), onExit(message),
   * onGap(firstSeq, since), onError(message), onDetached().
   */
  exec(message, handler) {
    const proc = { lastSeq: 0, sent: false, handler };
    this.processes.set(message.id, proc);
    proc.sent = this.send({ type: "exec", ...message });
  }

  /**
   * Follow a process started earlier (by this page before a reload, or by another tab). With `screen`, a terminal's
   * screen comes back drawn as it is now (handler.onScreen) instead of a replay of its output.
   */
  attach(id, handler, { screen = false } = {}) {
    const proc = { lastSeq: 0, sent: false, handler, screen };
    this.processes.set(id, proc);
    proc.sent = this.send(screen ? { type: "attach", id, since: 0, screen: true } : { type: "attach", id, since: 0 });
  }

  /**
   * Stop following a process (it is not killed; signal it first if it should end). `tell: false` when the process
   * is gone anyway (its workspace was deleted), so the server is not asked about it.
   */
  forget(id, { tell = true } = {}) {
    const proc = this.processes.get(id);
    if (!proc) return;
    this.processes.delete(id);
    if (tell && this.isOpen && proc.sent) this.ws.send(JSON.stringify({ type: "detach", id }));
  }

  isFollowing(id) {
    return this.processes.has(id);
  }

  lastSeq(id) {
    const proc = this.processes.get(id);
    return proc ? proc.lastSeq : 0;
  }

  // --- the socket ---------------------------------------------------------------------------------------

  _opened(ws) {
    if (ws !== this.ws) return;
    this.opened = true;
    this.connects += 1;
    this.backoff = MIN_BACKOFF_MS;
    this.pending = [];
    // Re-attach first, so output resumes right after the last chunk shown; then what was typed meanwhile.
    for (const [id, proc] of this.processes) {
      if (!proc.sent) continue;
      // One that had asked for its screen and not got it yet asks again; the rest replay from the last seq.
      const attach = { type: "attach", id, since: proc.lastSeq };
      ws.send(JSON.stringify(proc.screen ? { ...attach, since: 0, screen: true } : attach));
    }
    for (const key of this.subscriptions.keys()) this._sendSubscribe(key);
    for (const entry of this.watches.values()) {
      const again = entry.sent;
      this._sendWatch(entry);
      if (again) entry.handler.onResumed?.();
    }
    for (const request of this.lists) this._sendList(request);
    const queued = this.queue;
    this.queue = [];
    for (const message of queued) {
      if ((message.type === "exec" || message.type === "attach") && this.processes.has(message.id)) {
        this.processes.get(message.id).sent = true;
      }
      ws.send(JSON.stringify(message));
    }
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => this.isOpen && this.ws.send('{"type":"ping"}'), PING_EVERY_MS);
    this._setState("open");
  }

  _closed(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearInterval(this.pingTimer);
    this.pending = [];
    for (const request of this.lists) request.sent = false; // asked again on the next connection
    for (const proc of this.processes.values()) proc.handler.onDetached?.();
    if (this.stopped) {
      this._setState("closed");
      return;
    }
    if (event.code === 4401) {
      this._setState("unauthorized");
      return;
    }
    this._scheduleReconnect();
    if (!this.opened) this.onFailedAttempt();
  }

  _scheduleReconnect() {
    const delay = this.backoff + Math.random() * this.backoff * 0.3;
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this._setState("reconnecting", { delay });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  _setState(state, detail = {}) {
    this.state = state;
    this.onState(state, detail);
  }

  _receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const proc = message.id !== undefined ? this.processes.get(message.id) : undefined;
    switch (message.type) {
      case "stdout":
      case "stderr":
        if (!proc || message.seq <= proc.lastSeq) return; // a replay of something already shown
        proc.lastSeq = message.seq;
        proc.handler.onData?.(message.data, message.type);
        return;
      case "started":
        proc?.handler.onStarted?.();
        return;
      case "attached":
        if (!proc) return;
        // An attach with the screen loses nothing: the screen message draws what the replay no longer holds.
        if (!proc.screen && message.firstSeq > proc.lastSeq + 1) proc.handler.onGap?.(message.firstSeq, proc.lastSeq);
        proc.screen = false; // a later re-attach (after a drop) replays from the last seq, as for any process
        proc.handler.onAttached?.(message);
        return;
      case "screen":
        if (!proc || message.seq < proc.lastSeq) return;
        proc.lastSeq = message.seq;
        proc.handler.onScreen?.(message);
        return;
      case "processes":
        this._settle("list", refKey(message), message.items);
        return;
      case "exit":
        if (!proc) return;
        this.processes.delete(message.id);
        proc.handler.onExit?.(message);
        return;
      case "status":
        this._settle("subscribe", refKey(message));
        this.onStatus(message);
        return;
      case "subscribed":
        this._settle("subscribe", refKey(message));
        return;
      case "watching":
        this._settle("watch", watchKey(message, message.path));
        return;
      case "files":
        this.watches.get(watchKey(message, message.path))?.handler.onFiles?.(message);
        return;
      case "unwatched": {
        const key = watchKey(message, message.path);
        const entry = this.watches.get(key);
        if (message.reason && entry) {
          this.watches.delete(key); // ended by the server: the workspace stopped
          entry.handler.onEnded?.(message);
        }
        return;
      }
      case "error":
        this._error(message, proc);
        return;
      default:
        return; // pong, unsubscribed
    }
  }

  /** A request of this kind for this workspace was answered: it waits no more (a list resolves with `items`). */
  _settle(kind, key, items) {
    const entry = this.pending.find((p) => p.kind === kind && p.key === key);
    if (!entry) return;
    this.pending.splice(this.pending.indexOf(entry), 1);
    if (entry.request) {
      this._endList(entry.request);
      entry.request.resolve(items || []);
    }
  }

  _error(message, proc) {
    if (proc) {
      if (message.code === "slow_consumer") {
        this.send({ type: "attach", id: message.id, since: proc.lastSeq });
        return;
      }
      if (!["invalid_message", "too_large"].includes(message.code)) {
        // The process could not be started or followed (not_found, not_running, conflict, ...): it is gone for us.
        this.processes.delete(message.id);
      }
      proc.handler.onError?.(message);
      return;
    }
    if (message.id === undefined && this.pending.length > 0) {
      const entry = this.pending.shift();
      if (entry.kind === "watch") {
        const watch = this.watches.get(entry.key);
        if (watch) {
          this.watches.delete(entry.key);
          watch.handler.onError?.(message);
        }
        return;
      }
      if (entry.request) {
        this._endList(entry.request);
        entry.request.reject(message);
        return;
      }
      const ref = this.subscriptions.get(entry.key);
      if (ref) this.onSubscribeError(ref, message);
      return; // else: a subscription dropped meanwhile (the page moved on); its refusal no longer matters
    }
    this.onError(message);
  }
}
