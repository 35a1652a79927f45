// The explorer's buttons: a new file (a typed path, created empty, or opened when it exists already) and delete (of
// the selected file or folder, after a confirm dialog).

import { api } from "./api.js";
import { confirmDialog, note, showError, toast } from "./notify.js";
import { $, dirname } from "./util.js";

export class FileActions {
  /**
   * @param {object} parts
   * @param {import("./workspace.js").Workspace} parts.workspace
   * @param {import("./tree.js").FileTree} parts.tree
   * @param {import("./editor.js").Editor} parts.editor
   */
  constructor({ workspace, tree, editor }) {
    this.workspace = workspace;
    this.tree = tree;
    this.editor = editor;
  }

  /** The path field, filled with the selected folder. */
  showNewFileForm() {
    if (!this.workspace.running) {
      toast("Start the workspace first", "info");
      return;
    }
    const form = $("new-file-form");
    const input = $("new-file-path");
    const selected = this.tree.selected;
    const folder = selected ? (selected.type === "dir" ? selected.path : dirname(selected.path)) : "";
    form.hidden = false;
    input.value = folder ? folder + "/" : "";
    input.focus();
  }

  async createFile(event) {
    event.preventDefault();
    const { tree, editor } = this;
    const input = $("new-file-path");
    const path = input.value.trim().replace(/^\.?\/+/, "");
    if (!path || path.endsWith("/")) {
      toast("Type a file name, e.g. src/main.py");
      return;
    }
    const ref = this.workspace.ref;
    try {
      await api.read(ref, path);
      toast(`${path} already exists; opened it`, "info");
      $("new-file-form").hidden = true;
      await editor.open(path);
    } catch (err) {
      if (err.status !== 404) {
        showError(err);
        return;
      }
      let made;
      try {
        // Only where nothing is: a file made meanwhile (by the terminal, say) is opened, not emptied.
        made = await api.sync(ref, { [path]: { content: "", ifMatch: null } });
      } catch (syncErr) {
        if (syncErr.code !== "conflict") {
          showError(syncErr);
          return;
        }
      }
      $("new-file-form").hidden = true;
      if (made) {
        await editor.openNew(path, "", Object.values(made.versions || {})[0] ?? null);
      } else {
        toast(`${path} was just made in the workspace; opened it`, "info");
        await editor.open(path);
      }
    }
    tree.setActive(path);
    await tree.reveal(path);
    tree.setActive(path);
    editor.focus();
  }

  /** Delete the file or folder selected in the tree, or else the file open in the editor. */
  async deleteSelected() {
    const { tree, editor } = this;
    const target = tree.selected || (editor.path ? { path: editor.path, type: "file" } : null);
    if (!target) {
      toast("Select a file or folder in the explorer first", "info");
      return;
    }
    const what = target.type === "dir" ? "folder" : "file";
    const text = `The ${what} is removed from the workspace for good.`;
    const ok = await confirmDialog(`Delete ${target.path}?`, text, "Delete");
    if (!ok) return;
    try {
      await api.remove(this.workspace.ref, [target.path]);
      editor.closeBelow(target.path);
      tree.selected = null;
      note(`Deleted ${target.path}`);
    } catch (err) {
      showError(err);
    }
    await tree.refresh();
  }
}
