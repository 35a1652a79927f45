// The API token and the REST calls. The token lives in sessionStorage only and is never logged.

const TOKEN_KEY = "ide-backend.token";

export class ApiError extends Error {
  constructor(message, { status = 0, code = "", body = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/** Take ?token= from the address bar into sessionStorage and remove it from the visible URL and history entry. */
export function adoptTokenFromUrl() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl !== null) {
    url.searchParams.delete("token");
    window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
    if (fromUrl.trim()) sessionStorage.setItem(TOKEN_KEY, fromUrl.trim());
  }
  return getToken();
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export function wsUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/api/v1/ws?token=${encodeURIComponent(getToken())}`;
}

let onUnauthorized = () => {};

/** Called with an ApiError when the server says the token is missing or wrong. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** One call to the API with the token; resolves to the answer, rejects with ApiError(message). */
async function call(url, name, { method = "GET", body, signal, requestId } = {}) {
  const headers = { authorization: `Bearer ${getToken()}` };
  if (requestId) headers["x-request-id"] = requestId; // the server marks the file changes of this call with it
  if (body !== undefined) headers["content-type"] = "application/json";
  const json = body === undefined ? undefined : JSON.stringify(body);
  let response;
  try {
    response = await fetch(url, { method, headers, body: json, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`The server cannot be reached (${name})`, { code: "network" });
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok || !data || data.success !== true) {
    const message = (data && data.message) || `${name}: HTTP ${response.status}`;
    const error = new ApiError(message, { status: response.status, code: data && data.code, body: data });
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  return data;
}

/** POST /api/v1/containers/<endpoint> with JSON; resolves to the answer, rejects with ApiError(message). */
export function post(endpoint, body, { signal, requestId } = {}) {
  return call(`/api/v1/containers/${endpoint}`, endpoint, { method: "POST", body, signal, requestId });
}

export const api = {
  /** Start (or create) the workspace; `template` (null: the workspace's own, or the default for a new one). */
  start: (ref, template = null) => post("start", template ? { ...ref, template } : ref),
  stop: (ref) => post("stop", ref),
  status: (ref) => post("status", ref),
  exec: (ref, command, extra = {}) => post("exec", { ...ref, command, ...extra }),
  /** Write files; `requestId` comes back on the watch's changes this write made (`origin: "sync"`). */
  sync: (ref, files, { requestId } = {}) => post("sync", { ...ref, files }, { requestId }),
  theme: (ref, theme) => post("vscode-theme", { ...ref, theme }),
  list: (ref, path = "", depth = 1) => post("files/list", { ...ref, path, depth }),
  read: (ref, path) => post("files/read", { ...ref, path }),
  remove: (ref, paths) => post("files/delete", { ...ref, paths }),
  /** One page of the project's workspaces (a scoped token gets what it covers): {data, nextCursor}. */
  workspaces: (projectId, cursor = null, limit = 100) =>
    post("list", cursor ? { projectId, limit, cursor } : { projectId, limit }),
  deleteWorkspace: (ref) => post("delete", ref),
  /** GET /api/v1/templates: {default, data: [{name, description, image, ...}]} (any valid token may look). */
  templates: () => call("/api/v1/templates", "templates"),
};
