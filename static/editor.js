// The Monaco editor (AMD build from /vendor/monaco-editor/min/vs): open a workspace file, edit, save it back.

import { api } from "./api.js";
import { defineMonacoThemes, monacoThemeId } from "./themes.js";
import { basename, h } from "./util.js";

const MONACO_BASE = "/vendor/monaco-editor/min/vs";

export function loadMonaco() {
  return new Promise((resolve, reject) => {
    const amd = window.require;
    if (!amd || typeof amd.config !== "function") {
      reject(new Error("Monaco's loader is missing (run scripts/frontend.sh to install the front-end packages)"));
      return;
    }
    amd.config({ paths: { vs: MONACO_BASE } });
    amd(["vs/editor/editor.main"], (module) => resolve(window.monaco || module), (err) => {
      reject(new Error(`Monaco failed to load: ${err && err.message ? err.message : err}`));
    });
  });
}

export class Editor {
  /**
   * @param {object} els {host, placeholder, title, save, cursor, language}
   * @param {{onSaved: (path: string) => void, onError: (err: Error) => void, onInfo: (msg: string) => void}} hooks
   */
  constructor(els, hooks) {
    this.els = els;
    this.hooks = hooks;
    this.monaco = null;
    this.editor = null;
    this.ref = null;
    this.path = null;
    this.files = new Map(); // path -> {model, savedVersion, readOnly}
    this.saving = false;
    this.canWrite = true; // false with a read-only token: every file opens read-only
    this.themeId = null;
    this.loaded = new Promise((resolve, reject) => {
      this._loaded = { resolve, reject };
    });
    this.loaded.catch(() => {}); // reported by init's caller
    els.save.addEventListener("click", () => this.save());
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
      model: null,
      theme: monacoThemeId(theme),
      automaticLayout: true,
      fontFamily: '"JetBrains Mono", "Cascadia Code", "Fira Code", Menlo, Consolas, "DejaVu Sans Mono", monospace',
      fontSize: 13.5,
      lineHeight: 21,
      minimap: { enabled: true, renderCharacters: false, scale: 1 },
      scrollBeyondLastLine: false,
      smoothScrolling: true,
      padding: { top: 10 },
      renderLineHighlight: "all",
      bracketPairColorization: { enabled: true },
      tabSize: 4,
    });
    // No minimap on narrow screens, where every column counts.
    const minimap = () => this.editor.updateOptions({ minimap: { enabled: this.els.host.clientWidth > 640 } });
    new ResizeObserver(minimap).observe(this.els.host);
    this.editor.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.KeyS, () => this.save());
    this.editor.onDidChangeCursorPosition((e) => {
      this.els.cursor.textContent = `Ln ${e.position.lineNumber}, Col ${e.position.column}`;
    });
    this.editor.onDidChangeModelContent(() => this._renderTitle());
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
    for (const file of this.files.values()) file.model.dispose();
    this.files.clear();
    this.path = null;
    if (this.editor) this.editor.setModel(null);
    this._renderTitle();
  }

  /** Close the files at or below `path` (it was deleted). */
  closeBelow(path) {
    for (const [p, file] of [...this.files]) {
      if (p === path || p.startsWith(path + "/")) {
        file.model.dispose();
        this.files.delete(p);
        if (this.path === p) {
          this.path = null;
          if (this.editor) this.editor.setModel(null);
        }
      }
    }
    this._renderTitle();
  }

  isDirty(path = this.path) {
    const file = path && this.files.get(path);
    return Boolean(file && !file.readOnly && file.model.getAlternativeVersionId() !== file.savedVersion);
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
    this._setFile(path, text, binary);
    this._show(path);
    if (binary) this.hooks.onInfo(`${path} is not UTF-8 text; it is shown read-only and empty`);
  }

  /** A file that does not exist yet: an empty buffer that Save creates. */
  async openNew(path, content = "") {
    if (!(await this._whenLoaded())) return;
    this._setFile(path, content, false);
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

  async save() {
    const path = this.path;
    const file = path && this.files.get(path);
    if (!file || file.readOnly || this.saving) return;
    const version = file.model.getAlternativeVersionId();
    const content = file.model.getValue();
    this.saving = true;
    this._renderTitle();
    try {
      await api.sync(this.ref, { [path]: content });
      file.savedVersion = version;
      this.hooks.onSaved(path);
    } catch (err) {
      this.hooks.onError(err);
    } finally {
      this.saving = false;
      this._renderTitle();
    }
  }

  _setFile(path, text, readOnly) {
    const old = this.files.get(path);
    if (old) old.model.dispose();
    const uri = this.monaco.Uri.from({ scheme: "workspace", path: "/" + path });
    const stale = this.monaco.editor.getModel(uri);
    if (stale) stale.dispose();
    const model = this.monaco.editor.createModel(text, this._language(path), uri);
    const savedVersion = model.getAlternativeVersionId();
    this.files.set(path, { model, savedVersion, readOnly: readOnly || !this.canWrite });
  }

  _show(path) {
    this.path = path;
    const file = this.files.get(path);
    if (this.editor && file) {
      this.editor.setModel(file.model);
      this.editor.updateOptions({ readOnly: file.readOnly });
      this.els.language.textContent = this._languageName(file.model.getLanguageId());
    }
    this._renderTitle();
  }

  _language(path) {
    const name = basename(path).toLowerCase();
    for (const lang of this.monaco.languages.getLanguages()) {
      if ((lang.filenames || []).some((f) => f.toLowerCase() === name)) return lang.id;
      if ((lang.extensions || []).some((ext) => name.endsWith(ext.toLowerCase()))) return lang.id;
    }
    return "plaintext";
  }

  _languageName(id) {
    const lang = this.monaco.languages.getLanguages().find((l) => l.id === id);
    return (lang && lang.aliases && lang.aliases[0]) || id;
  }

  _renderTitle() {
    const { title, save, placeholder, host } = this.els;
    const path = this.path;
    placeholder.hidden = Boolean(path);
    host.classList.toggle("hidden", !path);
    if (!path) {
      title.replaceChildren(h("span", { class: "muted" }, "No file open"));
      delete title.dataset.path;
      delete title.dataset.dirty;
      save.disabled = true;
      this.els.cursor.textContent = "";
      this.els.language.textContent = "";
      return;
    }
    const parts = path.split("/");
    const crumbs = [];
    parts.forEach((part, i) => {
      if (i > 0) crumbs.push(h("span", { class: "sep" }, "›"));
      crumbs.push(h("span", { class: i === parts.length - 1 ? "leaf" : "crumb" }, part));
    });
    const file = this.files.get(path);
    const dirty = this.isDirty(path);
    const items = [
      h("span", { class: "crumbs", title: path }, ...crumbs),
      file && file.readOnly ? h("span", { class: "chip" }, "read-only") : null,
      dirty ? h("span", { class: "dirty", title: "Unsaved changes", "aria-label": "unsaved changes" }) : null,
      this.saving ? h("span", { class: "muted saving" }, "saving…") : null,
    ];
    title.replaceChildren(...items.filter(Boolean));
    title.dataset.path = path;
    title.dataset.dirty = String(dirty);
    save.disabled = !file || file.readOnly || this.saving;
  }
}
