// What the page's token lets it do, and the page fitted to it.
//
// A token minted by POST /api/v1/tokens is a JSON Web Token whose middle part is base64url JSON: `pid` (the
// project), `wid` (the workspace; absent for every workspace of the project), `act` (["read", "write"] or ["read"])
// and `exp` (seconds since 1970). The operator's token is no JWT and opens everything. The page reads the payload
// only to show what the token covers; the server checks the signature and every request.
//
// The pure functions run under Node too (tests/test_page_life.py); applyScope touches the page only when called.

import { $ } from "./util.js";

/** "10:44", or "29 Nov, 10:44" when not today. */
export function clock(when, now = Date.now()) {
  const date = new Date(when);
  if (Number.isNaN(date.getTime())) return "";
  const time = date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date(now).toDateString()) return time;
  return `${date.toLocaleDateString("en-GB", { day: "numeric", month: "short" })}, ${time}`;
}

function base64UrlJson(part) {
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/**
 * The scope of a minted token: {projectId, workspaceId (null: the whole project), canWrite, expiresAt (ms or
 * null)}; null for the operator's token (or anything that is not one of ours).
 */
export function readScope(token) {
  const parts = String(token || "").split(".");
  if (parts.length !== 3) return null;
  let payload;
  try {
    payload = base64UrlJson(parts[1]);
  } catch {
    return null;
  }
  if (!payload || typeof payload !== "object" || typeof payload.pid !== "string") return null;
  const actions = Array.isArray(payload.act) ? payload.act : [];
  return {
    projectId: payload.pid,
    workspaceId: typeof payload.wid === "string" ? payload.wid : null,
    canWrite: actions.includes("write"),
    expiresAt: typeof payload.exp === "number" ? payload.exp * 1000 : null,
  };
}

/** Whether two scopes cover the same (both null: the operator's token). */
export function sameScope(a, b) {
  return JSON.stringify(a && { ...a, expiresAt: 0 }) === JSON.stringify(b && { ...b, expiresAt: 0 });
}

export function isExpired(scope, now = Date.now()) {
  return Boolean(scope && scope.expiresAt !== null && scope.expiresAt <= now);
}

/** {short, long}: what the token covers, in words (the chip in the top bar, and its tooltip). */
export function describeScope(scope, now = Date.now()) {
  if (!scope) return { short: "", long: "" };
  const where = scope.workspaceId ? `${scope.projectId}/${scope.workspaceId}` : `project ${scope.projectId}`;
  const short = [
    scope.workspaceId ? "this workspace only" : "this project only",
    scope.canWrite ? "" : "read-only",
    scope.expiresAt ? `until ${clock(scope.expiresAt, now)}` : "",
  ];
  const long = [
    scope.workspaceId
      ? `This token opens workspace ${where} only.`
      : `This token opens the workspaces of project ${scope.projectId} only.`,
    scope.canWrite
      ? ""
      : "It may only read: starting, stopping, running commands, typing in the terminal, saving and deleting are off.",
    scope.expiresAt ? `It expires at ${clock(scope.expiresAt, now)}.` : "",
  ];
  return { short: short.filter(Boolean).join(" · "), long: long.filter(Boolean).join(" ") };
}

/** Why the token dialog asks again: an expired token says when and what to do. */
export function rejectedMessage(scope, now = Date.now()) {
  if (isExpired(scope, now)) {
    const when = clock(scope.expiresAt, now);
    return `Your token expired at ${when}. Ask whoever gave you this link for a new one and paste it here.`;
  }
  if (scope) return "That token was not accepted (it may have been revoked). Paste a new one.";
  return "That token was not accepted. Paste the current one.";
}

/** The ids the page opens with: the token's, where it names them; otherwise the saved ones (or the defaults). */
export function idsFor(scope, saved) {
  if (!scope) return saved;
  const workspaceId =
    scope.workspaceId || (saved.projectId === scope.projectId ? saved.workspaceId : "main");
  return { projectId: scope.projectId, workspaceId };
}

// Buttons and forms that change something: hidden for a read-only token.
const WRITE_CONTROLS = ["start", "stop", "run-form", "new-file", "delete", "save", "terminal-restart"];

function lock(input, locked, why) {
  input.readOnly = locked;
  input.classList.toggle("locked", locked);
  input.title = locked ? why : "";
  input.setAttribute("aria-readonly", String(locked));
}

/** Fit the page to the token: ids locked to what it covers, what it may not do hidden, and the scope in words. */
export function applyScope(scope) {
  const { short, long } = describeScope(scope);
  const chip = $("scope");
  chip.hidden = !scope;
  $("scope-text").textContent = short;
  chip.title = long;
  chip.dataset.access = scope && !scope.canWrite ? "read" : "write";
  document.body.dataset.access = scope && !scope.canWrite ? "read" : "write";
  lock($("project-id"), Boolean(scope), `This token is for project ${scope?.projectId} only`);
  lock($("workspace-id"), Boolean(scope?.workspaceId), `This token is for workspace ${scope?.workspaceId} only`);
  const readOnly = Boolean(scope && !scope.canWrite);
  for (const id of WRITE_CONTROLS) $(id).hidden = readOnly;
  $("run-readonly").hidden = !readOnly;
}
