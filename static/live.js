// The live channel (/api/v1/ws, see docs/protocol.md): one websocket that reconnects with backoff, keeps the
// status subscriptions, and re-attaches to every process it follows with the last `seq` it saw, so output is
// neither lost nor shown twice.

const MIN_BACKOFF_MS = 300;
const MAX_BACKOFF_MS = 10_000;
const PING_EVERY_MS = 25_000;
const MAX_QUEUED = 2_000;

const refKey = (ref) => `${ref.projectId}/${ref.workspaceId}`;

export class LiveChannel {
  /**
   * @param {object} opts
   * @param {() => string} opts.url the websocket URL (with the token), asked again on every connect
   * @param {(state: string, detail?: object) => void} opts.onState "connecting" | "open" | "reconnecting" | "unauthorized"
   * @param {(event: object) => void} opts.onStatus every `status` event
   * @param {(ref: object, error: object) => void} opts.onSubscribeError a subscribe that was refused (e.g. not_found)
   * @param {(error: object) => void} opts.onError errors that belong to nothing else
   * @param {() => void} opts.onFailedAttempt a connection attempt that never opened (a wrong token looks like this)
   */
  constructor({ url, onState, onStatus, onSubscribeError, onError, onFailedAttempt }) {
    this.url = url;
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
    this.pendingSubscribes = []; // keys, in the order their subscribe went out
    this.processes = new Map(); // id -> {lastSeq, sent, handler}
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
    this.pendingSubscribes.push(key);
    this.ws.send(JSON.stringify({ type: "subscribe", ...ref }));
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
    if (!proc.sent) proc.queuedExec = true;
  }

  /** Stop following a process (it is not killed; signal it first if it should end). */
  forget(id) {
    const proc = this.processes.get(id);
    if (!proc) return;
    this.processes.delete(id);
    if (this.isOpen && proc.sent) this.ws.send(JSON.stringify({ type: "detach", id }));
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
    this.pendingSubscribes = [];
    // Re-attach first, so output resumes right after the last chunk shown; then what was typed meanwhile.
    for (const [id, proc] of this.processes) {
      if (proc.sent) ws.send(JSON.stringify({ type: "attach", id, since: proc.lastSeq }));
    }
    for (const key of this.subscriptions.keys()) this._sendSubscribe(key);
    const queued = this.queue;
    this.queue = [];
    for (const message of queued) {
      if (message.type === "exec" && this.processes.has(message.id)) {
        const proc = this.processes.get(message.id);
        proc.sent = true;
        proc.queuedExec = false;
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
    this.pendingSubscribes = [];
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
        if (proc && message.firstSeq > proc.lastSeq + 1) proc.handler.onGap?.(message.firstSeq, proc.lastSeq);
        proc?.handler.onAttached?.(message);
        return;
      case "exit":
        if (!proc) return;
        this.processes.delete(message.id);
        proc.handler.onExit?.(message);
        return;
      case "status":
        this._settle(refKey(message));
        this.onStatus(message);
        return;
      case "subscribed":
        this._settle(refKey(message));
        return;
      case "error":
        this._error(message, proc);
        return;
      default:
        return; // pong, unsubscribed
    }
  }

  _settle(key) {
    const index = this.pendingSubscribes.indexOf(key);
    if (index >= 0) this.pendingSubscribes.splice(index, 1);
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
    if (message.id === undefined && this.pendingSubscribes.length > 0) {
      const key = this.pendingSubscribes.shift();
      const ref = this.subscriptions.get(key);
      if (ref) {
        this.onSubscribeError(ref, message);
        return;
      }
    }
    this.onError(message);
  }
}
