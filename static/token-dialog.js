// The token prompt: a modal dialog for the API token, when the address bar brought none or the server refused it.

import { setToken } from "./api.js";
import { $ } from "./util.js";

/** Show the dialog (with why, if given) and resolve with the token once one is submitted; it is stored first. */
export function askForToken(reason = "") {
  const dialog = $("token-dialog");
  const error = $("token-error");
  error.hidden = !reason;
  error.textContent = reason;
  $("token-input").value = "";
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
  return new Promise((resolve) => {
    $("token-form").onsubmit = (event) => {
      const token = $("token-input").value.trim();
      if (!token) {
        event.preventDefault();
        return;
      }
      setToken(token);
      $("token-input").value = "";
      resolve(token);
    };
  });
}
