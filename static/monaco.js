// Monaco (its AMD build, served from node_modules at /vendor/monaco-editor/min/vs): loading it, the look the editor
// and the comparison share, and the language of a file.

import { basename } from "./util.js";

const MONACO_BASE = "/vendor/monaco-editor/min/vs";

export const LOOK = {
  automaticLayout: true,
  fontFamily: '"JetBrains Mono", "Cascadia Code", "Fira Code", Menlo, Consolas, "DejaVu Sans Mono", monospace',
  fontSize: 13.5,
  lineHeight: 21,
  scrollBeyondLastLine: false,
  smoothScrolling: true,
  bracketPairColorization: { enabled: true },
  tabSize: 4,
};

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

/** The id of the language Monaco highlights a file in, by its name ("plaintext" when none fits). */
export function languageOf(monaco, path) {
  const name = basename(path).toLowerCase();
  for (const lang of monaco.languages.getLanguages()) {
    if ((lang.filenames || []).some((f) => f.toLowerCase() === name)) return lang.id;
    if ((lang.extensions || []).some((ext) => name.endsWith(ext.toLowerCase()))) return lang.id;
  }
  return "plaintext";
}

/** A language's name for people ("Python", not "python"). */
export function languageName(monaco, id) {
  const lang = monaco.languages.getLanguages().find((l) => l.id === id);
  return (lang && lang.aliases && lang.aliases[0]) || id;
}
