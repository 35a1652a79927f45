// The words beside the status badge: what keeps a running workspace from its idle stop, or when that stop comes,
// or why a stopped one stopped (from /status: keptAliveBy, idleStopAt, stopReason; see README, "Idle stop").
// describeStatus is pure and runs under Node too (tests/test_page_life.py).

import { clock } from "./scope.js";

const STOP_REASONS = {
  requested: ["stopped on request", "Someone stopped it (Stop, or POST /stop)."],
  idle: ["stopped: idle", "Nothing used it for the idle timeout, so the server stopped it. Start it to go on."],
  died: ["stopped: it died", "Its main process ended without anyone asking."],
  oom_killed: ["stopped: out of memory", "It used more memory than its limit and was killed."],
  removed_outside: ["stopped: removed outside", "Its container was removed behind the backend's back."],
};

/**
 * {text, title, kind} for a /status answer's data (null: nothing to say). `ownTerminalId` names the page's own
 * shell, so "terminal term-… attached" (or "running") reads "this page's terminal"; `ownRunId` the run box's
 * command, which reads "this page's command".
 */
export function describeStatus(data, { ownTerminalId = null, ownRunId = null, now = Date.now() } = {}) {
  if (!data) return { text: "", title: "", kind: "" };
  if (data.running) {
    const own = ownTerminalId ? [`terminal ${ownTerminalId} attached`, `terminal ${ownTerminalId} running`] : [];
    const run = ownRunId ? [`process ${ownRunId} attached`, `process ${ownRunId} running`] : [];
    const name = (item) =>
      own.includes(item) ? "this page's terminal" : run.includes(item) ? "this page's command" : item;
    const named = (data.keptAliveBy || []).map(name);
    const kept = [...new Set(named)];
    if (kept.length) {
      return {
        text: `kept running by: ${kept.join(", ")}`,
        title: "The workspace is not stopped when idle while any of these is open or running",
        kind: "kept",
      };
    }
    if (data.idleStopAt) {
      const at = clock(data.idleStopAt, now);
      return {
        text: `stops when idle at ${at}`,
        title: `Unless something uses it before ${at} (a command, a saved file, a terminal), the server stops it then`,
        kind: "idle",
      };
    }
    return { text: "", title: "", kind: "" };
  }
  if (data.stopReason) {
    const [text, title] = STOP_REASONS[data.stopReason] || [`stopped: ${data.stopReason.replace(/_/g, " ")}`, ""];
    return { text, title, kind: data.stopReason === "requested" ? "stopped" : "stopped-why" };
  }
  return { text: "", title: "", kind: "" };
}

/** Show describeStatus's words in `el` (empty: hidden). */
export function renderStatus(el, described) {
  el.textContent = described.text;
  el.title = described.title;
  el.dataset.kind = described.kind;
  el.hidden = !described.text;
}
