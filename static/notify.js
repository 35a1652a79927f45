// Telling the user: toasts for errors and notes (bottom right, out of the way), a short note in the status bar, and
// the confirm dialog before something is removed for good.

import { $, h } from "./util.js";

export function toast(message, kind = "error", timeout = kind === "error" ? 9000 : 3500) {
  const box = $("toasts");
  while (box.children.length >= 4) box.firstElementChild.remove();
  const close = h("button", { class: "toast-close", type: "button", "aria-label": "Dismiss" }, "×");
  const el = h(
    "div",
    { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", { class: "toast-dot" }),
    h("span", { class: "toast-text" }, message),
    close,
  );
  const remove = () => {
    el.classList.add("leaving");
    setTimeout(() => el.remove(), 180);
  };
  close.addEventListener("click", remove);
  box.append(el);
  if (timeout) setTimeout(remove, timeout);
}

let noteTimer = 0;
/** A short confirmation in the status bar (saved, deleted, theme set): seen, never in the way. */
export function note(message) {
  const el = $("note");
  el.textContent = message;
  el.classList.add("shown");
  clearTimeout(noteTimer);
  noteTimer = setTimeout(() => el.classList.remove("shown"), 5000);
}

/** An error as a toast; an aborted request is no error to show. */
export function showError(err) {
  if (err && err.name === "AbortError") return;
  toast((err && err.message) || String(err), "error");
}

/** The confirm dialog; resolves true when the user chose okLabel. */
export function confirmDialog(title, text, okLabel) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}
