// The Monaco editor (monaco.js): workspace files open in tabs, are edited and saved back over the version they were
// read at (files/read's `version`, sync's `ifMatch`). A save refused because the file changed in the workspace
// meanwhile asks whether to reload theirs, keep mine or compare the two (conflict.js). Files changed in the
// workspace while open follow the workspace's file changes (onFiles): one without unsaved changes reloads by itself,
// one with them shows a bar saying so (reload theirs, compare, or keep mine), as does one deleted or moved away.

import { api } from "./api.js";
import { askConflict, DiffView } from "./conflict.js";
import { EditorTabs, renderPath } from "./editor-tabs.js";
import { languageName, languageOf, loadMonaco, LOOK } from "./monaco.js";
import { confirmDialog } from "./notify.js";
import { defineMonacoThemes, monacoThemeId } from "./themes.js";
import { basename, h } from "./util.js";

export class Editor {
  /**
   * @param {object} els {host, placeholder, title, save, cursor, language, tabs, diff: {view, host, title, keep,
   *   reload, close}}
   * @param {object} hooks
   * @param {(path: string, info: object) => void} hooks.onSaved with the workspace's containerInfo from sync
   * @param {(path: string | null) => void} hooks.onActive the file shown changed (null: none)
   * @param {(err: Error) => void} hooks.onError
   * @param {(msg: string) => void} hooks.onInfo
   */
  constructor(els, hooks) {
    this.els = els;
    this.hooks = hooks;
    this.monaco = null;
    this.editor = null;
    this.ref = null;
    this.path = null;
    // path -> {model, savedAt: the model's alternative version id when last read or saved, readOnly, version: the
    // file's version in the workspace the text was read at or saved as (null: it did not exist), viewState,
    // disk: null, or what happened to it in the workspace since ({kind: "modified" | "deleted", to?: its new path})}
    this.files = new Map();
    this.ownRequests = new Set(); // the request ids of this page's saves: their changes come back as our own echo
    this.bar = h("div", { class: "disk-bar", role: "status", hidden: true });
    const body = els.host.parentElement; // above the editor's body, so it pushes the editor down instead of covering it
    body.parentElement.insertBefore(this.bar, body);
    this.saving = false;
    this.canWrite = true; // false with a read-only token: every file opens read-only
    this.themeId = null;
    this.loaded = new Promise((resolve, reject) => {
      this._loaded = { resolve, reject };
    });
    this.loaded.catch(() => {}); // reported by init's caller
    els.save.addEventListener("click", () => this.save());
    this.tabs = new EditorTabs(els.tabs, { onPick: (path) => this.pick(path), onClose: (path) => this.close(path) });
    this.diff = new DiffView(els.diff, {
      onKeep: (path, version) => this._keepMine(path, version),
      onReload: (path) => this._reloadTheirs(path),
      onClose: () => this.closeCompare(),
    });
    this._renderTitle();
  }

  async init(theme) {
    let monaco;
    try {
      monaco = await loadMonaco();
    } catch (err) {
      this._loaded.reject(err);
      throw err;
    }
    this.monaco = monaco;
    defineMonacoThemes(monaco);
    this.editor = monaco.editor.create(this.els.host, {
      ...LOOK,
      model: null,
      theme: monacoThemeId(theme),
      minimap: { enabled: true, renderCharacters: false, scale: 1 },
      padding: { top: 10 },
      renderLineHighlight: "all",
    });
    // No minimap on narrow screens, where every column counts.
    const minimap = () => this.editor.updateOptions({ minimap: { enabled: this.els.host.clientWidth > 640 } });
    new ResizeObserver(minimap).observe(this.els.host);
    this.editor.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.KeyS, () => this.save());
    this.editor.onDidChangeCursorPosition((e) => {
      this.els.cursor.textContent = `Ln ${e.position.lineNumber}, Col ${e.position.column}`;
    });
    // After the change: an undo or redo sets the model's alternative version id (what "unsaved" is told by) only
    // once its edit has been announced.
    this.editor.onDidChangeModelContent(() => queueMicrotask(() => this._renderTitle()));
    this._loaded.resolve();
  }

  get ready() {
    return this.editor !== null;
  }

  setTheme(theme) {
    this.themeId = monacoThemeId(theme);
    if (this.monaco) this.monaco.editor.setTheme(this.themeId);
  }

  setWorkspace(ref) {
    this.ref = ref;
    this.closeAll();
  }

  closeAll() {
    this.diff.hide();
    for (const file of this.files.values()) file.model.dispose();
    this.files.clear();
    this.path = null;
    if (this.editor) this.editor.setModel(null);
    this._renderTitle();
    this.hooks.onActive(null);
  }

  /** Close the files at or below `path` (it was deleted). */
  closeBelow(path) {
    for (const p of [...this.files.keys()]) if (p === path || p.startsWith(path + "/")) this._drop(p);
  }

  /** Close a tab; one with unsaved changes only once the user agrees to lose them. */
  async close(path) {
    if (!this.files.has(path)) return;
    if (this.isDirty(path)) {
      const text = `Your changes to ${path} are not saved and will be lost.`;
      if (!(await confirmDialog(`Close ${basename(path)} without saving?`, text, "Close without saving"))) return;
    }
    this._drop(path);
  }

  /** Forget an open file; the tab beside it (or none) is shown when it was the active one. */
  _drop(path) {
    const file = this.files.get(path);
    if (!file) return;
    if (this.diff.path === path) this.closeCompare();
    const paths = [...this.files.keys()];
    const index = paths.indexOf(path);
    this.files.delete(path);
    if (this.path === path) {
      const next = paths[index + 1] || paths[index - 1] || null;
      if (this.editor) this.editor.setModel(null);
      this.path = null;
      if (next) this._show(next);
      else this.hooks.onActive(null);
    }
    file.model.dispose();
    this._renderTitle();
  }

  /** Show an open file (a tab was picked). */
  pick(path) {
    if (this.files.has(path)) this._show(path);
    this.focus();
  }

  isDirty(path = this.path) {
    const file = path && this.files.get(path);
    return Boolean(file && !file.readOnly && file.model.getAlternativeVersionId() !== file.savedAt);
  }

  get dirtyCount() {
    return [...this.files.keys()].filter((p) => this.isDirty(p)).length;
  }

  /** Open a workspace file (read again unless it has unsaved changes). */
  async open(path) {
    if (!(await this._whenLoaded())) return;
    const existing = this.files.get(path);
    if (existing && this.isDirty(path)) {
      this._show(path);
      return;
    }
    const ref = this.ref;
    let answer;
    try {
      answer = await api.read(ref, path);
    } catch (err) {
      this.hooks.onError(err);
      return;
    }
    if (ref !== this.ref) return;
    const binary = answer.encoding !== "utf-8";
    const text = binary ? "" : answer.content;
    this._setFile(path, text, binary, answer.version);
    this._show(path);
    if (binary) this.hooks.onInfo(`${path} is not UTF-8 text; it is shown read-only and empty`);
  }

  /**
   * A file opened without reading it: `version` is what the workspace has (sync's answer for a file just made), or
   * null when it has none, so that the first save creates it and refuses to replace one made meanwhile.
   */
  async openNew(path, content = "", version = null) {
    if (!(await this._whenLoaded())) return;
    this._setFile(path, content, false, version);
    this._show(path);
  }

  /** Wait for Monaco; false (and the error shown) when it could not load. */
  async _whenLoaded() {
    try {
      await this.loaded;
      return true;
    } catch (err) {
      this.hooks.onError(err);
      return false;
    }
  }

  focus() {
    if (this.editor) this.editor.focus();
  }

  // --- following the workspace's changes -----------------------------------------------------------------------

  /** One `files` message of the workspace's watch: open files changed, deleted or moved in the workspace. */
  onFiles(message) {
    if (message.projectId !== this.ref?.projectId || message.workspaceId !== this.ref?.workspaceId) return;
    if (message.overflow) {
      // Changes were lost: look at every open file again.
      for (const path of this.files.keys()) this._changedOnDisk(path, null);
      return;
    }
    for (const change of message.changes) {
      if (change.origin === "sync" && this.ownRequests.has(change.requestId)) continue; // our own save
      if (change.kind === "deleted" || change.kind === "moved") {
        const gone = change.kind === "moved" ? change.from : change.path;
        for (const path of this.files.keys()) {
          if (path !== gone && !path.startsWith(gone + "/")) continue;
          const to = change.kind === "moved" ? change.path + path.slice(gone.length) : null;
          this.files.get(path).disk = { kind: "deleted", to };
        }
      }
      if (change.kind !== "deleted" && this.files.has(change.path)) this._changedOnDisk(change.path, change.version);
    }
    this._renderTitle();
  }

  /** The workspace's file changed (to `version`; null: not known): reload it unless it has unsaved changes. */
  _changedOnDisk(path, version) {
    const file = this.files.get(path);
    if (!file || (version && version === file.version && !file.disk)) return; // what the editor has already
    if (this.isDirty(path)) file.disk = { kind: "modified" };
    else this._reloadQuietly(path);
  }

  /** Take the workspace's text into a file without unsaved changes, keeping the cursor and scroll position. */
  async _reloadQuietly(path) {
    const file = this.files.get(path);
    const ref = this.ref;
    let theirs;
    try {
      theirs = await this._theirs(path);
    } catch {
      return; // the next change tries again
    }
    if (ref !== this.ref || this.files.get(path) !== file) return;
    if (!theirs) {
      file.disk = { kind: "deleted", to: null };
    } else if (this.isDirty(path)) {
      if (theirs.version !== file.version) file.disk = { kind: "modified" }; // typed meanwhile: ask instead
    } else if (theirs.text === null) {
      this._setFile(path, "", true, theirs.version);
      if (this.path === path) this._show(path);
    } else {
      const { model } = file;
      if (model.getValue() !== theirs.text) {
        const view = this.path === path && this.editor ? this.editor.saveViewState() : null;
        model.pushStackElement();
        model.pushEditOperations([], [{ range: model.getFullModelRange(), text: theirs.text }], () => null);
        model.pushStackElement();
        if (view) this.editor.restoreViewState(view);
      }
      file.savedAt = model.getAlternativeVersionId();
      file.version = theirs.version;
      file.disk = null;
    }
    this._renderTitle();
  }

  /** The bar over the editor when the file shown changed in the workspace and the editor kept its own text. */
  _renderBar() {
    const file = this.path && this.files.get(this.path);
    const disk = file && !this.diff.path ? file.disk : null;
    this.bar.hidden = !disk;
    if (!disk) {
      this.bar.replaceChildren();
      return;
    }
    const path = this.path;
    const button = (label, action, name) => h("button", { type: "button", class: "btn small", dataset: { action: name }, onclick: action }, label);
    const dismiss = button("Keep mine", () => {
      file.disk = null;
      this._renderTitle();
    }, "keep");
    if (disk.kind === "deleted") {
      const what = disk.to ? `was moved to ${disk.to}` : "was deleted";
      this.bar.dataset.kind = "deleted";
      this.bar.replaceChildren(
        h("span", {}, `${basename(path)} ${what} in the workspace. Saving writes it here again.`),
        ...(disk.to ? [button("Open " + basename(disk.to), () => this.open(disk.to), "open")] : []),
        button("Close", () => this._drop(path), "close"),
        dismiss,
      );
    } else {
      this.bar.dataset.kind = "modified";
      this.bar.replaceChildren(
        h("span", {}, `${basename(path)} changed in the workspace, and you have unsaved changes.`),
        button("Reload theirs", () => this._reloadTheirs(path), "reload"),
        button("Compare", () => this.compare(path), "compare"),
        dismiss,
      );
    }
  }

  /** Save the file shown, over the version it was read at (or as a new file, where it had none). */
  async save() {
    const path = this.path;
    const file = path && this.files.get(path);
    if (!file || file.readOnly || this.saving) return;
    await this._write(path, file, file.version);
  }

  /** Write the editor's text with `ifMatch`; a conflict asks the user what to do. */
  async _write(path, file, ifMatch) {
    const ref = this.ref;
    const at = file.model.getAlternativeVersionId();
    const content = file.model.getValue();
    this.saving = true;
    this._renderTitle();
    let conflict = null;
    // The changes this save makes come back over the watch marked with this id: not news to the editor.
    const requestId = `save-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    this.ownRequests.add(requestId);
    setTimeout(() => this.ownRequests.delete(requestId), 30_000);
    try {
      const answer = await api.sync(ref, { [path]: { content, ifMatch } }, { requestId });
      if (this.files.get(path) !== file) return; // closed (or the workspace switched) meanwhile
      file.savedAt = at;
      file.disk = null;
      file.version = Object.values(answer.versions || {})[0] ?? null; // one file written: its version
      this.hooks.onSaved(path, answer.data || {});
    } catch (err) {
      const conflicts = (err.status === 409 && err.code === "conflict" && err.body && err.body.conflicts) || [];
      if (conflicts.length) conflict = conflicts.find((c) => c.path === path) || conflicts[0];
      else this.hooks.onError(err);
    } finally {
      this.saving = false;
      this._renderTitle();
    }
    if (conflict && this.files.get(path) === file) await this._resolve(path, conflict.version);
  }

  /** The file changed (theirs: its version now, null: deleted) since the editor read it: ask, then do that. */
  async _resolve(path, theirs) {
    if (this.path !== path) this._show(path);
    const choice = await askConflict(path, theirs === null);
    if (!this.files.has(path)) return;
    if (choice === "reload") await this._reloadTheirs(path);
    else if (choice === "keep") await this._keepMine(path, theirs);
    else if (choice === "compare") await this.compare(path);
    else this.focus(); // dismissed: the edits stay, unsaved
  }

  /** Write the editor's text over `theirs` (the version the user saw; null: over nothing). */
  async _keepMine(path, theirs) {
    const file = this.files.get(path);
    if (!file) return;
    this.closeCompare();
    await this._write(path, file, theirs);
  }

  /** The file as the workspace has it now: {text (null: not UTF-8 text), version}, or null when it is gone. */
  async _theirs(path) {
    try {
      const answer = await api.read(this.ref, path);
      return { text: answer.encoding === "utf-8" ? answer.content : null, version: answer.version };
    } catch (err) {
      if (err.status === 404) return null;
      throw err;
    }
  }

  /** Drop the editor's text for the file as the workspace has it now (one undo brings the edits back). */
  async _reloadTheirs(path) {
    this.closeCompare();
    const ref = this.ref;
    let theirs;
    try {
      theirs = await this._theirs(path);
    } catch (err) {
      this.hooks.onError(err);
      return;
    }
    const file = this.files.get(path);
    if (ref !== this.ref || !file) return;
    if (!theirs) {
      this._drop(path);
      this.hooks.onInfo(`${path} no longer exists in the workspace; closed it`);
      return;
    }
    const { text, version } = theirs;
    const { model } = file;
    if (text !== null) {
      model.pushStackElement();
      model.pushEditOperations([], [{ range: model.getFullModelRange(), text }], () => null);
      model.pushStackElement();
    }
    if (text !== null && model.getValue() === text) {
      file.savedAt = model.getAlternativeVersionId();
      file.version = version;
      file.disk = null;
      this._renderTitle();
    } else {
      // Not text any more, or other line endings than the editor's: a model of its own.
      this._setFile(path, text ?? "", text === null, version);
      this._show(path);
    }
    this.focus();
  }

  /** Theirs (the workspace's file now) beside mine, in Monaco's diff editor; mine stays editable there. */
  async compare(path) {
    const file = this.files.get(path);
    if (!file) return;
    const ref = this.ref;
    let theirs;
    try {
      theirs = await this._theirs(path);
    } catch (err) {
      this.hooks.onError(err);
      return;
    }
    if (ref !== this.ref || this.files.get(path) !== file) return;
    if (theirs && theirs.text === null) this.hooks.onInfo(`${path} is not UTF-8 text in the workspace now`);
    this._show(path);
    this.diff.show(this.monaco, {
      path,
      theirs: (theirs && theirs.text) || "",
      version: theirs ? theirs.version : null,
      gone: !theirs,
      model: file.model,
      options: { theme: this.themeId || undefined, ...LOOK },
    });
    this._renderTitle();
  }

  /** Back from the comparison to the editor (nothing decided: the edits stay unsaved). */
  closeCompare() {
    if (!this.diff.path) return;
    this.diff.hide();
    this._renderTitle();
    this.focus();
  }

  _setFile(path, text, readOnly, version) {
    const old = this.files.get(path);
    if (this.diff.path === path) this.closeCompare();
    if (old) old.model.dispose();
    const uri = this.monaco.Uri.from({ scheme: "workspace", path: "/" + path });
    const stale = this.monaco.editor.getModel(uri);
    if (stale) stale.dispose();
    const model = this.monaco.editor.createModel(text, languageOf(this.monaco, path), uri);
    const entry = { model, savedAt: model.getAlternativeVersionId(), readOnly: readOnly || !this.canWrite };
    this.files.set(path, { ...entry, version: version ?? null, viewState: null });
  }

  _show(path) {
    if (this.diff.path && this.diff.path !== path) this.closeCompare();
    const file = this.files.get(path);
    const before = this.path && this.files.get(this.path);
    if (this.editor && before && before !== file) before.viewState = this.editor.saveViewState();
    this.path = path;
    if (this.editor && file) {
      this.editor.setModel(file.model);
      if (file.viewState) this.editor.restoreViewState(file.viewState);
      this.editor.updateOptions({ readOnly: file.readOnly });
      this.els.language.textContent = languageName(this.monaco, file.model.getLanguageId());
    }
    this._renderTitle();
    this.hooks.onActive(path);
  }

  _renderTitle() {
    this._renderBar();
    const { title, save, placeholder, host } = this.els;
    const path = this.path;
    this.tabs.render(
      [...this.files].map(([p, f]) => ({ path: p, active: p === path, dirty: this.isDirty(p), readOnly: f.readOnly })),
    );
    placeholder.hidden = Boolean(path);
    host.classList.toggle("hidden", !path || Boolean(this.diff.path));
    title.hidden = !path;
    if (!path) {
      title.replaceChildren(h("span", { class: "muted" }, "No file open"));
      delete title.dataset.path;
      delete title.dataset.dirty;
      save.disabled = true;
      this.els.cursor.textContent = "";
      this.els.language.textContent = "";
      return;
    }
    const file = this.files.get(path);
    const dirty = this.isDirty(path);
    renderPath(title, path, { readOnly: Boolean(file && file.readOnly), saving: this.saving });
    title.dataset.path = path;
    title.dataset.dirty = String(dirty);
    save.disabled = !file || file.readOnly || this.saving;
  }
}
