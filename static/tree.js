// The workspace's file tree: folders are listed lazily (files/list, depth 1) when opened, and follow the
// workspace's file changes live (a `watch` on the live channel): rows come and go as files are made, deleted and
// renamed, by anything in the workspace, without listing again (but after an overflow or a reconnect).

import { api } from "./api.js";
import { basename, dirname, formatBytes, h, svgIcon } from "./util.js";

const CHEVRON = "M6 4l4 4-4 4";
const FOLDER = "M1.5 3.5h4.5l1.5 1.5h7v8.5h-13z";
const FILE = "M3.5 1.5h6l3 3v10h-9z M9.5 1.5v3h3";
const LINK = "M6.5 9.5l3-3 M7 4.5l1-1a2.5 2.5 0 0 1 3.5 3.5l-1 1 M9 11.5l-1 1a2.5 2.5 0 0 1-3.5-3.5l1-1";

const EXT_CLASS = {
  js: "js", mjs: "js", cjs: "js", ts: "ts", tsx: "ts", jsx: "js", json: "json", py: "py", sh: "sh", bash: "sh",
  md: "md", html: "html", css: "css", yml: "yml", yaml: "yml", toml: "yml", go: "go", rs: "rs", c: "c", h: "c",
  txt: "txt",
};

/** The icon of a file named `name`, coloured by its extension (the tree's rows and the editor's tabs). */
export function fileIcon(name) {
  const ext = name.includes(".") ? name.split(".").pop().toLowerCase() : "";
  return svgIcon(FILE, `icon file ${EXT_CLASS[ext] || ""}`);
}

export class FileTree {
  /**
   * @param {HTMLElement} host
   * @param {{onOpen: (path: string) => void, onError: (err: Error) => void, onSelect?: (entry: object) => void,
   *   live?: import("./live.js").LiveChannel, onFiles?: (message: object) => void}} hooks `live`: watch the workspace
   *   while it runs; `onFiles`: every `files` message it gets (the editor follows them too)
   */
  constructor(host, { onOpen, onError, onSelect, live, onFiles }) {
    this.host = host;
    this.onOpen = onOpen;
    this.onError = onError;
    this.onSelect = onSelect || (() => {});
    this.live = live || null;
    this.onFiles = onFiles || (() => {});
    this.watching = null; // the ref watched
    this.ref = null;
    this.children = new Map(); // folder path ("" = root) -> entries
    this.expanded = new Set();
    this.selected = null; // {path, type}
    this.active = null; // the file open in the editor
    this.available = false;
    this.canWrite = true; // false with a read-only token: no hint to create files
    this.generation = 0;
    host.addEventListener("keydown", (event) => this._key(event));
  }

  setWorkspace(ref) {
    this._unwatch();
    this.ref = ref;
    this.children.clear();
    this.expanded.clear();
    this.selected = null;
    this.active = null;
    this.generation += 1;
    this.setAvailable(false, "Checking the workspace…");
  }

  /** Whether the workspace runs (only then can it be listed). */
  setAvailable(available, message = "Start the workspace to browse its files.") {
    this.available = available;
    if (!available) {
      this._unwatch();
      this.children.clear();
      this.host.replaceChildren(h("p", { class: "empty" }, message));
    } else {
      this._watch();
    }
  }

  // --- following the workspace's changes -----------------------------------------------------------------------

  _watch() {
    if (!this.live || !this.ref || this.watching === this.ref) return;
    this._unwatch();
    const ref = this.ref;
    this.watching = ref;
    this.live.watch(ref, "", {
      onFiles: (message) => {
        if (this.ref !== ref) return;
        this.applyChanges(message);
        this.onFiles(message);
      },
      onResumed: () => this.ref === ref && this.refresh(), // changes made while the channel was down were missed
      onEnded: () => {
        if (this.watching === ref) this.watching = null; // the workspace stopped: watched again when it runs
      },
      onError: () => {
        if (this.watching === ref) this.watching = null;
      },
    });
  }

  _unwatch() {
    if (this.live && this.watching) this.live.unwatch(this.watching, "");
    this.watching = null;
  }

  /** Apply one `files` message: rows made, removed, renamed; an overflow lists everything open again. */
  applyChanges(message) {
    if (!this.available || !this.children.has("")) return;
    if (message.overflow) {
      this.refresh();
      return;
    }
    const relist = new Set();
    for (const change of message.changes) {
      if (change.kind === "moved") {
        this._removeEntry(change.from);
        this._putEntry(change, relist);
      } else if (change.kind === "deleted") {
        this._removeEntry(change.path);
      } else {
        this._putEntry(change, relist);
      }
    }
    this.render();
    for (const folder of relist) this._relist(folder);
  }

  _putEntry(change, relist) {
    const folder = dirname(change.path);
    const entries = this.children.get(folder);
    if (!entries) return; // a folder nobody opened: listed when it is
    const old = entries.find((e) => e.path === change.path);
    const entry = { ...(old || { size: null, mode: null, mtime: null }), path: change.path, type: change.type };
    entry.version = change.version ?? null;
    if (old) entries.splice(entries.indexOf(old), 1, entry);
    else entries.push(entry);
    entries.sort((a, b) => (a.type !== "dir") - (b.type !== "dir") || (a.path.toLowerCase() < b.path.toLowerCase() ? -1 : 1));
    if (change.type === "dir" && change.kind !== "modified") {
      // A folder made (or moved in, or made again): what is in it is new.
      for (const key of [...this.children.keys()]) if (key === change.path || key.startsWith(change.path + "/")) this.children.delete(key);
      if (this.expanded.has(change.path)) relist.add(change.path);
    }
  }

  _removeEntry(path) {
    const entries = this.children.get(dirname(path));
    if (entries) {
      const index = entries.findIndex((e) => e.path === path);
      if (index >= 0) entries.splice(index, 1);
    }
    const below = (p) => p === path || p.startsWith(path + "/");
    for (const key of [...this.children.keys()]) if (below(key)) this.children.delete(key);
    for (const key of [...this.expanded]) if (below(key)) this.expanded.delete(key);
    if (this.selected && below(this.selected.path)) this.selected = null;
  }

  async _relist(folder) {
    const generation = this.generation;
    try {
      const answer = await api.list(this.ref, folder, 1);
      if (generation !== this.generation || !this.expanded.has(folder)) return;
      this.children.set(folder, answer.entries);
      this.render();
    } catch {
      // gone again meanwhile: the next change says so
    }
  }

  /** List the root and every open folder again, keeping what is open and selected. */
  async refresh() {
    if (!this.ref || !this.available) return;
    const generation = this.generation;
    const folders = ["", ...[...this.expanded].sort()];
    const results = await Promise.allSettled(folders.map((folder) => api.list(this.ref, folder, 1)));
    if (generation !== this.generation) return;
    // A folder opened while this listed (shown by a change that came first) keeps what its own listing found.
    const kept = [...this.children].filter(([folder]) => this.expanded.has(folder) && !folders.includes(folder));
    this.children = new Map(kept);
    results.forEach((result, index) => {
      const folder = folders[index];
      if (result.status === "fulfilled") {
        this.children.set(folder, result.value.entries);
      } else if (folder === "") {
        this.onError(result.reason);
      } else {
        this.expanded.delete(folder); // deleted meanwhile
      }
    });
    this.render();
  }

  /** Open every folder on the way to `path` and select it. */
  async reveal(path) {
    let folder = dirname(path);
    const chain = [];
    while (folder) {
      chain.unshift(folder);
      folder = dirname(folder);
    }
    for (const f of chain) this.expanded.add(f);
    this.selected = { path, type: "file" };
    await this.refresh();
    const row = this.host.querySelector(`[data-path="${CSS.escape(path)}"]`);
    if (row) row.scrollIntoView({ block: "nearest" });
  }

  setActive(path) {
    this.active = path;
    for (const row of this.host.querySelectorAll(".row")) row.classList.toggle("active", row.dataset.path === path);
  }

  render() {
    const root = this.children.get("");
    if (!root) return;
    if (root.length === 0) {
      const hint = this.canWrite ? " Create a file with New file." : "";
      this.host.replaceChildren(h("p", { class: "empty" }, `The workspace is empty.${hint}`));
      return;
    }
    const rows = [];
    const walk = (folder, depth) => {
      for (const entry of this.children.get(folder) || []) {
        rows.push(this._row(entry, depth));
        if (entry.type === "dir" && this.expanded.has(entry.path)) {
          const inside = this.children.get(entry.path);
          if (inside && inside.length === 0) {
            rows.push(h("div", { class: "row placeholder-row", style: `--depth:${depth + 1}` }, "empty folder"));
          } else if (inside) walk(entry.path, depth + 1);
          else rows.push(h("div", { class: "row loading", style: `--depth:${depth + 1}` }, "Loading…"));
        }
      }
    };
    walk("", 0);
    this.host.replaceChildren(...rows);
  }

  _row(entry, depth) {
    const isDir = entry.type === "dir";
    const open = isDir && this.expanded.has(entry.path);
    const name = basename(entry.path);
    const ext = name.includes(".") ? name.split(".").pop().toLowerCase() : "";
    const icon = isDir ? FOLDER : entry.type === "symlink" ? LINK : FILE;
    const iconClass = isDir ? "icon folder" : `icon file ${EXT_CLASS[ext] || ""}`;
    const title = isDir || entry.size == null ? entry.path : `${entry.path} · ${formatBytes(entry.size)}`;
    const row = h(
      "div",
      {
        class: "row" + (this.selected?.path === entry.path ? " selected" : "") + (this.active === entry.path ? " active" : ""),
        role: "treeitem",
        tabindex: "0",
        title,
        "aria-expanded": isDir ? String(open) : undefined,
        style: `--depth:${depth}`,
        dataset: { path: entry.path, type: entry.type },
        onclick: () => this._activate(entry),
      },
      isDir ? svgIcon(CHEVRON, "chevron" + (open ? " open" : "")) : h("span", { class: "chevron-space" }),
      svgIcon(icon, iconClass),
      h("span", { class: "name" }, name),
    );
    return row;
  }

  async _activate(entry) {
    this.selected = { path: entry.path, type: entry.type };
    this.onSelect(this.selected);
    if (entry.type === "dir") {
      if (this.expanded.has(entry.path)) {
        this.expanded.delete(entry.path);
        this.render();
      } else {
        this.expanded.add(entry.path);
        this.render();
        try {
          const answer = await api.list(this.ref, entry.path, 1);
          this.children.set(entry.path, answer.entries);
        } catch (err) {
          this.expanded.delete(entry.path);
          this.onError(err);
        }
        this.render();
      }
      this._focus(entry.path);
    } else if (entry.type === "file") {
      this.render();
      this._focus(entry.path);
      this.onOpen(entry.path);
    } else {
      this.render();
      this._focus(entry.path);
    }
  }

  _focus(path) {
    const row = this.host.querySelector(`[data-path="${CSS.escape(path)}"]`);
    if (row) row.focus({ preventScroll: false });
  }

  _key(event) {
    const row = event.target.closest(".row");
    if (!row || !row.dataset.path) return;
    const rows = [...this.host.querySelectorAll(".row[data-path]")];
    const index = rows.indexOf(row);
    if (event.key === "ArrowDown" && rows[index + 1]) rows[index + 1].focus();
    else if (event.key === "ArrowUp" && rows[index - 1]) rows[index - 1].focus();
    else if (event.key === "Enter" || event.key === " ") row.click();
    else return;
    event.preventDefault();
  }
}
