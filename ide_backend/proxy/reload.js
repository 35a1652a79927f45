// Served by the ide-backend /ide/ proxy and added to VS Code's workbench page: reloads the tab once the workspace
// runs a new code-server after a stop and start. VS Code's own reconnection cannot resume with a server process
// that never knew this window (it asks for a manual reload); a network blip with the same code-server is left to
// VS Code. Runs before the workbench's modules, so it sees every websocket the workbench opens.
(() => {
  "use strict";
  const me = document.currentScript;
  const statusUrl = new URL("status", me.src).href; // below the workspace's /ide/ path: its session cookie goes along
  const loaded = me.dataset.generation; // the container start this page was served by
  const NativeWebSocket = window.WebSocket;
  let watching = false;
  let reopened = false;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function state() {
    const response = await fetch(statusUrl, { cache: "no-store", credentials: "same-origin" });
    if (response.status === 401 || response.status === 403 || response.status === 404) {
      return { gone: true }; // the session ended or the workspace was deleted: nothing to reload into
    }
    return response.ok ? response.json() : null;
  }

  async function watch() {
    if (watching) return;
    watching = true;
    reopened = false;
    let delay = 1000;
    for (;;) {
      await sleep(delay);
      delay = Math.min(delay * 1.5, 5000);
      let now = null;
      try {
        now = await state();
      } catch {
        continue; // the backend itself is away for a moment
      }
      if (now === null) continue;
      if (now.gone) break;
      if (now.running && now.ready && now.generation !== loaded) {
        window.location.reload();
        return;
      }
      if (now.running && now.generation === loaded && reopened) break; // the same code-server: VS Code reconnected
    }
    watching = false;
  }

  class WatchedWebSocket extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("open", () => {
        reopened = true;
      });
      this.addEventListener("close", () => {
        watch();
      });
    }
  }
  window.WebSocket = WatchedWebSocket;
})();
