// A save the server refused because the file changed in the workspace since the editor read it (409 conflict): the
// dialog that asks what to do (reload theirs, keep mine, compare), and the comparison itself, Monaco's diff editor
// with the workspace's text on the left and the editor's on the right.

import { $ } from "./util.js";

/**
 * Ask what to do about `path`, changed (or, `gone`, deleted) in the workspace since it was read. Resolves to
 * "reload", "keep", "compare", or "" when the dialog was dismissed (Esc): the edits stay unsaved in the editor.
 */
export function askConflict(path, gone) {
  const dialog = $("conflict-dialog");
  $("conflict-title").textContent = gone ? `${path} was deleted in the workspace` : `${path} changed in the workspace`;
  $("conflict-text").textContent = gone
    ? "It was removed since you opened it, so your edits were not saved. Reload theirs closes it and drops your " +
      "edits; Keep mine writes it again with your text."
    : "It was changed since you opened it (by a terminal, a program or another tab), so your edits were not saved. " +
      "Reload theirs drops your edits for the file as it is now; Keep mine writes your text over theirs.";
  $("conflict-reload").textContent = gone ? "Close it" : "Reload theirs";
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
  });
}

/** The comparison: theirs (the workspace's file now, read-only) against mine (the editor's own model, editable). */
export class DiffView {
  /**
   * @param {object} els {view, host, title, keep, reload, close}
   * @param {{onKeep: (path: string, version: string | null) => void, onReload: (path: string) => void,
   *          onClose: () => void}} hooks
   */
  constructor(els, hooks) {
    this.els = els;
    this.diff = null; // made the first time it is needed
    this.original = null; // the model of theirs, owned here
    this.current = null; // {path, version}: what is compared, and the version theirs was read at
    els.keep.addEventListener("click", () => {
      const { path, version } = this.current;
      hooks.onKeep(path, version);
    });
    els.reload.addEventListener("click", () => hooks.onReload(this.current.path));
    els.close.addEventListener("click", () => hooks.onClose());
    els.view.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.current) hooks.onClose();
    });
  }

  /** The file being compared, or null. */
  get path() {
    return this.current ? this.current.path : null;
  }

  /**
   * @param {object} monaco
   * @param {object} what {path, theirs: text, version: theirs' version (null: deleted), gone, model: mine, options}
   */
  show(monaco, { path, theirs, version, gone, model, options }) {
    this.hide();
    if (!this.diff) {
      this.diff = monaco.editor.createDiffEditor(this.els.host, {
        ...options,
        automaticLayout: true,
        renderSideBySide: true,
        renderSideBySideInlineBreakpoint: 560, // side by side down to a narrow panel; one column below
        originalEditable: false,
        readOnly: false,
        ignoreTrimWhitespace: false,
        renderMarginRevertIcon: false,
        minimap: { enabled: false },
      });
    }
    this.original = monaco.editor.createModel(theirs, model.getLanguageId());
    this.current = { path, version };
    this.diff.setModel({ original: this.original, modified: model });
    this.els.title.textContent = gone ? `${path}: deleted in the workspace` : path;
    this.els.view.dataset.gone = String(Boolean(gone));
    this.els.reload.textContent = gone ? "Close it" : "Reload theirs";
    this.els.view.hidden = false;
    this.diff.layout();
    this.diff.getModifiedEditor().focus();
  }

  hide() {
    if (!this.current) return;
    this.els.view.hidden = true;
    this.diff.setModel(null);
    this.original.dispose();
    this.original = null;
    this.current = null;
  }
}
