// The editor's head: a tab per open file, the active one marked, a dot in place of the close button while the file has
// unsaved changes (the close button shows on hover; closing such a tab asks first), middle click closes; and below
// the tabs the path of the file shown.

import { fileIcon } from "./tree.js";
import { basename, dirname, h, svgIcon } from "./util.js";

const CLOSE = "M4.5 4.5l7 7 M11.5 4.5l-7 7";

export class EditorTabs {
  /**
   * @param {HTMLElement} host
   * @param {{onPick: (path: string) => void, onClose: (path: string) => void}} hooks
   */
  constructor(host, { onPick, onClose }) {
    this.host = host;
    this.shown = ""; // what the tabs show now, so typing does not redraw them at every key
    host.addEventListener("click", (event) => {
      const tab = event.target.closest(".tab");
      if (!tab) return;
      if (event.target.closest(".tab-close")) onClose(tab.dataset.path);
      else onPick(tab.dataset.path);
    });
    host.addEventListener("auxclick", (event) => {
      const tab = event.target.closest(".tab");
      if (tab && event.button === 1) onClose(tab.dataset.path);
    });
    host.addEventListener("mousedown", (event) => {
      if (event.button === 1) event.preventDefault(); // no autoscroll on middle click
    });
    host.addEventListener("keydown", (event) => {
      const tab = event.target.closest(".tab");
      if (!tab) return;
      const tabs = [...host.querySelectorAll(".tab")];
      const index = tabs.indexOf(tab);
      if (event.key === "Enter" || event.key === " ") onPick(tab.dataset.path);
      else if (event.key === "ArrowRight" && tabs[index + 1]) tabs[index + 1].focus();
      else if (event.key === "ArrowLeft" && tabs[index - 1]) tabs[index - 1].focus();
      else if (event.key === "Delete") onClose(tab.dataset.path);
      else return;
      event.preventDefault();
    });
  }

  /** @param {{path: string, active: boolean, dirty: boolean, readOnly: boolean}[]} tabs in the order opened */
  render(tabs) {
    const shown = JSON.stringify(tabs);
    if (shown === this.shown) return;
    this.shown = shown;
    this.host.hidden = tabs.length === 0;
    const names = new Map();
    for (const { path } of tabs) names.set(basename(path), (names.get(basename(path)) || 0) + 1);
    this.host.replaceChildren(
      ...tabs.map(({ path, active, dirty, readOnly }) => {
        const name = basename(path);
        const twin = names.get(name) > 1; // two open files of the same name: say which folder each is in
        const tab = h(
          "div",
          {
            class: "tab" + (active ? " active" : ""),
            role: "tab",
            tabindex: active ? "0" : "-1",
            "aria-selected": String(active),
            title: path + (dirty ? " · unsaved changes" : readOnly ? " · read-only" : ""),
            dataset: { path, dirty: String(dirty) },
          },
          fileIcon(name),
          h("span", { class: "tab-name" }, name),
          twin ? h("span", { class: "tab-dir" }, dirname(path) || "/") : null,
          h(
            "button",
            {
              class: "tab-close",
              type: "button",
              tabindex: "-1",
              title: dirty ? "Unsaved changes (close asks first)" : "Close",
              "aria-label": dirty ? `Close ${name}, which has unsaved changes` : `Close ${name}`,
            },
            svgIcon(CLOSE),
            h("span", { class: "tab-dot", "aria-hidden": "true" }),
          ),
        );
        return tab;
      }),
    );
    // The active tab in view, scrolling the strip only (scrollIntoView would scroll a narrow page too).
    const active = this.host.querySelector(".tab.active");
    if (active) {
      const { offsetLeft: left, offsetWidth: width } = active;
      const host = this.host;
      if (left < host.scrollLeft) host.scrollLeft = left;
      else if (left + width > host.scrollLeft + host.clientWidth) host.scrollLeft = left + width - host.clientWidth;
    }
  }
}

/** The path of the file shown, folder by folder, with what else is true of it (read-only, being saved). */
export function renderPath(title, path, { readOnly, saving }) {
  const parts = path.split("/");
  const crumbs = [];
  parts.forEach((part, i) => {
    if (i > 0) crumbs.push(h("span", { class: "sep" }, "›"));
    crumbs.push(h("span", { class: i === parts.length - 1 ? "leaf" : "crumb" }, part));
  });
  const items = [
    h("span", { class: "crumbs", title: path }, ...crumbs),
    readOnly ? h("span", { class: "chip" }, "read-only") : null,
    saving ? h("span", { class: "muted saving" }, "saving…") : null,
  ];
  title.replaceChildren(...items.filter(Boolean));
}
