// The template picker in the top bar: what a workspace is made from (GET /api/v1/templates). It shows the open
// workspace's own template (from /status), or the server's default for one never started; Start sends the one
// picked. Picking another template for a workspace that exists makes Start re-create its container from that
// template on the same volume, files kept (workspace.js words the button). A read-only token only sees the
// workspace's template.

import { api } from "./api.js";
import { h } from "./util.js";

export class TemplatePicker {
  /**
   * @param {HTMLSelectElement} select
   * @param {object} parts
   * @param {import("./workspace.js").Workspace} parts.workspace
   */
  constructor(select, { workspace }) {
    this.select = select;
    this.workspace = workspace;
    this.known = []; // [{name, description, ...}] as the server lists them
    this.default = null; // the server's default template
    this.stored = null; // the open workspace's own template (null: never started, or not known yet)
    this.picked = null; // what the user picked for the open workspace (null: nothing yet)
    this.error = ""; // why the templates could not be listed
    this.names = ""; // the options shown, to rebuild them only when they change
    if (globalThis.CSS?.supports("appearance", "base-select")) {
      // A select that can be styled: its button shows the picked option's name (style.css hides the description).
      select.prepend(h("button", { type: "button" }, document.createElement("selectedcontent")));
    }
  }

  /** The template Start sends: null when there is no choice to send (the workspace's own, or the default, is used). */
  get wanted() {
    if (!this.known.length || !this.workspace.canWrite) return null;
    return this.select.value || null;
  }

  /** A template's description ("" when it has none, or is not listed). */
  describe(name) {
    return this.known.find((t) => t.name === name)?.description || "";
  }

  /** List the server's templates (once, after the token is accepted). */
  async load() {
    try {
      const answer = await api.templates();
      this.known = answer.data || [];
      this.default = answer.default || this.known[0]?.name || null;
      this.error = "";
    } catch (err) {
      // A refused token brings the token dialog; otherwise the picker just shows the workspace's own template.
      this.error = err.message;
    }
    this.render();
    this.workspace.updateStart();
  }

  /** Another workspace was opened: nothing picked for it, its own template not known yet. */
  switched() {
    this.picked = null;
    this.stored = null;
    this.render();
  }

  /** The open workspace's own template became known (null: it has none, never started or deleted). */
  showStored(name) {
    this.stored = name || null;
    if (this.picked === this.stored) this.picked = null; // started as picked: nothing different is picked any more
    this.render();
  }

  /** The user picked a template. */
  choose(name) {
    this.picked = name === this.shownByDefault() ? null : name;
    this.render();
    this.workspace.updateStart();
  }

  /** What the picker shows while nothing is picked: the workspace's own template, else the server's default. */
  shownByDefault() {
    return this.stored || this.default;
  }

  /** The options (rebuilt only when they change), the one shown, and whether the token may pick. */
  render() {
    const canWrite = this.workspace.canWrite;
    // A read-only token cannot start anything: it sees the workspace's own template, or nothing for a new one.
    const shown = (canWrite ? this.picked || this.shownByDefault() : this.stored) || "";
    const names = this.known.map((t) => t.name);
    if (!names.includes(shown)) names.push(shown); // "" (nothing), or one the server no longer offers
    const key = names.join("\n");
    if (key !== this.names) {
      this.names = key;
      for (const option of [...this.select.options]) option.remove();
      this.select.append(...names.map((name) => this._option(name)));
    }
    this.select.value = shown;
    this.select.disabled = !canWrite || this.known.length === 0;
    this.select.dataset.stored = this.stored || "";
    this.select.title = [
      shown ? `${shown}: ${this.describe(shown) || "no description"}` : "",
      canWrite ? "" : "This token may only read: the workspace's own template.",
      this.error ? `The templates could not be listed: ${this.error}` : "",
    ]
      .filter(Boolean)
      .join("\n");
  }

  _option(name) {
    if (!name) return h("option", { value: "" }, "—");
    const description = this.describe(name) || (this.known.length ? "no longer offered by the server" : "");
    // The name, then the description: one line of text where a select shows options as text; in the browsers whose
    // select can be styled (style.css, appearance: base-select), the button shows the name alone.
    return h(
      "option",
      { value: name, "aria-label": description ? `${name}: ${description}` : name },
      h("span", { class: "tpl-name" }, name),
      description ? h("span", { class: "tpl-sep" }, " — ") : null,
      description ? h("span", { class: "tpl-desc" }, description) : null,
    );
  }
}
