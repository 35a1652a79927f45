// The Ports panel: the TCP ports something listens on in the workspace (from /status, then the live channel's status
// events with source "ports", sent while the page subscribes), each with a link that opens its preview in a new tab.
// The preview is served on an origin of its own; the link goes to /preview/... here, which sends the tab there, with
// the token once (like the VS Code button): the preview sets a cookie of its own and drops the token from the URL.

import { api, getToken } from "./api.js";
import { $, h } from "./util.js";

export class PortsPanel {
  /**
   * @param {HTMLElement} list the <ul> the ports go in
   * @param {object} parts
   * @param {import("./workspace.js").Workspace} parts.workspace the workspace the page shows
   */
  constructor(list, { workspace }) {
    this.list = list;
    this.workspace = workspace;
    this.shownFor = null; // "project/workspace" the list is of
    this.ports = [];
    this.render();
  }

  _key(ref) {
    return ref ? `${ref.projectId}/${ref.workspaceId}` : null;
  }

  /** Ask /status what listens now (the workspace changed, or its status did). */
  async refresh() {
    const ref = this.workspace.ref;
    if (!ref) return this.show(null, []);
    try {
      const { data } = await api.status(ref);
      if (this._key(ref) !== this._key(this.workspace.ref)) return;
      this.show(ref, data.running ? data.listening || [] : []);
    } catch {
      if (this._key(ref) === this._key(this.workspace.ref)) this.show(ref, []);
    }
  }

  /** A status event of the live channel: a port opened or closed, a snapshot that says what listens, or a stop. */
  onStatus(event) {
    const ref = { projectId: event.projectId, workspaceId: event.workspaceId };
    if (this._key(ref) !== this._key(this.workspace.ref)) return;
    if (Array.isArray(event.listening)) this.show(ref, event.listening);
    else if (!["running", "syncing"].includes(event.status)) this.show(ref, []);
  }

  show(ref, ports) {
    this.shownFor = this._key(ref);
    this.ports = ports;
    this.render();
  }

  render() {
    const count = $("ports-count");
    if (count) count.textContent = this.ports.length ? String(this.ports.length) : "";
    if (!this.ports.length) {
      const words = this.workspace.running ? "Nothing listens yet: start a server (on 0.0.0.0)." : "No ports: the workspace is not running.";
      this.list.replaceChildren(h("li", { class: "empty" }, words));
      return;
    }
    this.list.replaceChildren(...this.ports.map((port) => this._row(port)));
  }

  _row(port) {
    const label = h("span", { class: "port-number" }, String(port.port));
    const what = h("span", { class: "port-process" }, port.process || "");
    const loopback = port.address.startsWith("127.") || port.address === "::1";
    let action;
    if (loopback) {
      action = h("span", { class: "port-hint", title: `Listens on ${port.address} only, which the preview cannot reach` }, "start it on 0.0.0.0");
    } else if (!this.workspace.canWrite) {
      action = h("span", { class: "port-hint", title: "Previews need a token that may write" }, "no preview");
    } else {
      action = h(
        "a",
        {
          class: "port-open",
          href: port.previewUrl,
          target: "_blank",
          rel: "noopener noreferrer",
          dataset: { port: String(port.port) },
          title: `Open port ${port.port} in a new tab`,
          onclick: (event) => this.open(event, port),
        },
        "Open",
      );
    }
    return h("li", { class: "port-row", dataset: { portRow: String(port.port) }, title: `${port.address}:${port.port}` }, label, what, action);
  }

  /** Open the preview with the token once; the link's own href (no token) is what a copied link gets. */
  open(event, port) {
    event.preventDefault();
    const url = `${port.previewUrl}?token=${encodeURIComponent(getToken())}`;
    window.open(url, "_blank", "noopener,noreferrer"); // no opener: the preview cannot reach back into this page
  }
}
