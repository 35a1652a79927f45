// code-server keeps the user's settings.json on the server but does not watch it: a change made outside the
// workbench (the backend's /vscode-theme endpoint, vim in a terminal) only showed after a reload. This built-in
// extension runs next to that file, watches its folder and hands every changed top-level setting to the workbench's
// configuration service, which applies it at once (and writes the same value back, which changes nothing).
"use strict";

const fs = require("fs");
const path = require("path");
const vscode = require("vscode");

/** JSON with comments and trailing commas, the way VS Code reads settings.json; undefined when unreadable. */
function parseSettings(text) {
  let out = "";
  for (let i = 0; i < text.length; ) {
    const ch = text[i];
    if (ch === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (text.startsWith("//", i)) {
      const nl = text.indexOf("\n", i);
      i = nl < 0 ? text.length : nl;
    } else if (text.startsWith("/*", i)) {
      const end = text.indexOf("*/", i + 2);
      i = end < 0 ? text.length : end + 2;
    } else if (ch === ",") {
      let j = i + 1;
      while (j < text.length && " \t\r\n".includes(text[j])) j++;
      if (!(j < text.length && "}]".includes(text[j]))) out += ch;
      i++;
    } else {
      out += ch;
      i++;
    }
  }
  try {
    const value = out.trim() ? JSON.parse(out) : {};
    return value && typeof value === "object" && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function readSettings(file) {
  try {
    return parseSettings(fs.readFileSync(file, "utf8").replace(/^\uFEFF/, ""));
  } catch (err) {
    return err && err.code === "ENOENT" ? {} : undefined;
  }
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function activate(context) {
  // globalStorageUri is <user-data-dir>/User/globalStorage/<extension id>: settings.json is two folders up.
  const userDir = path.dirname(path.dirname(context.globalStorageUri.fsPath));
  const file = path.join(userDir, "settings.json");
  const log = vscode.window.createOutputChannel("ide-backend settings");
  context.subscriptions.push(log);

  // What the workbench has for each key, compared with the file at start-up: a change written while the
  // workbench was still loading is applied too.
  let known = {};
  const initial = readSettings(file) || {};
  const config = vscode.workspace.getConfiguration();
  for (const key of Object.keys(initial)) {
    const inspected = config.inspect(key);
    known[key] = inspected ? inspected.globalValue : initial[key];
  }

  let queue = Promise.resolve();
  const sync = () => {
    queue = queue.then(async () => {
      const now = readSettings(file);
      if (now === undefined) return; // half-written or not JSON: wait for the next change
      const keys = new Set([...Object.keys(known), ...Object.keys(now)]);
      const before = known;
      known = now;
      for (const key of keys) {
        if (same(before[key], now[key])) continue;
        try {
          await vscode.workspace.getConfiguration().update(key, now[key], vscode.ConfigurationTarget.Global);
          log.appendLine(`applied ${key}`);
        } catch (err) {
          log.appendLine(`could not apply ${key}: ${err && err.message ? err.message : err}`);
        }
      }
    });
  };

  let timer;
  let watcher;
  try {
    fs.mkdirSync(userDir, { recursive: true });
    // The folder, not the file: writers replace the file (a new inode), which a watch on the file would lose.
    watcher = fs.watch(userDir, (event, name) => {
      if (name && name !== "settings.json") return;
      clearTimeout(timer);
      timer = setTimeout(sync, 100);
    });
  } catch (err) {
    log.appendLine(`cannot watch ${userDir}: ${err.message}`);
  }
  context.subscriptions.push({ dispose: () => (clearTimeout(timer), watcher && watcher.close()) });
  sync();
}

function deactivate() {}

module.exports = { activate, deactivate };
