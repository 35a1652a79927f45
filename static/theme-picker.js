// The theme picker in the top bar: one VS Code theme for the page, the editor and the terminal, also set in the
// workspace's VS Code settings. The choice is kept in localStorage.

import { api } from "./api.js";
import { note, showError, toast } from "./notify.js";
import { applyPageTheme, DEFAULT_THEME, findTheme, terminalTheme, THEMES } from "./themes.js";
import { h } from "./util.js";

const THEME_KEY = "ide-backend.theme";

export class ThemePicker {
  /**
   * @param {HTMLSelectElement} select
   * @param {object} parts
   * @param {import("./workspace.js").Workspace} parts.workspace
   * @param {import("./editor.js").Editor} parts.editor
   * @param {() => import("./terminal.js").ShellTerminal | null} parts.terminal
   */
  constructor(select, { workspace, editor, terminal }) {
    this.select = select;
    this.workspace = workspace;
    this.editor = editor;
    this.terminal = terminal;
    this.current = findTheme(localStorage.getItem(THEME_KEY) || DEFAULT_THEME);
  }

  fill() {
    this.select.replaceChildren(...THEMES.map((t) => h("option", { value: t.name }, t.name)));
    this.select.value = this.current.name;
  }

  /** Show the theme on the page, in the editor and in the terminal. */
  apply(theme) {
    this.current = theme;
    applyPageTheme(theme);
    this.editor.setTheme(theme);
    this.terminal()?.setTheme(terminalTheme(theme));
  }

  /** The user picked a theme: show it, remember it, and set it in the workspace's VS Code (or say when it will be). */
  async choose(name) {
    const theme = findTheme(name);
    localStorage.setItem(THEME_KEY, theme.name);
    this.apply(theme);
    const { ref, status } = this.workspace;
    if (!this.workspace.canWrite) {
      note(`${theme.name} set for this page (this token may not change VS Code's settings)`);
      return;
    }
    if (!ref || status === "missing") {
      toast(`${theme.name} will be set in VS Code when the workspace starts`, "info");
      return;
    }
    try {
      await api.theme(ref, theme.name);
      note(`VS Code theme set to ${theme.name}`);
    } catch (err) {
      showError(err);
    }
  }
}
