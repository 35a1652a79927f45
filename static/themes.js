// The themes offered in the picker: the VS Code theme name sent to /vscode-theme, and matching colours for the
// page, the Monaco editor and the xterm terminal.

const DARK_ANSI = {
  black: "#000000", red: "#cd3131", green: "#0dbc79", yellow: "#e5e510",
  blue: "#2472c8", magenta: "#bc3fbc", cyan: "#11a8cd", white: "#e5e5e5",
  brightBlack: "#666666", brightRed: "#f14c4c", brightGreen: "#23d18b", brightYellow: "#f5f543",
  brightBlue: "#3b8eea", brightMagenta: "#d670d6", brightCyan: "#29b8db", brightWhite: "#e5e5e5",
};

const LIGHT_ANSI = {
  black: "#000000", red: "#cd3131", green: "#107c10", yellow: "#949800",
  blue: "#0451a5", magenta: "#bc05bc", cyan: "#0598bc", white: "#555555",
  brightBlack: "#666666", brightRed: "#cd3131", brightGreen: "#14ce14", brightYellow: "#b5ba00",
  brightBlue: "#0451a5", brightMagenta: "#bc05bc", brightCyan: "#0598bc", brightWhite: "#a5a5a5",
};

const SOLARIZED_ANSI = {
  black: "#073642", red: "#dc322f", green: "#859900", yellow: "#b58900",
  blue: "#268bd2", magenta: "#d33682", cyan: "#2aa198", white: "#eee8d5",
  brightBlack: "#586e75", brightRed: "#cb4b16", brightGreen: "#586e75", brightYellow: "#657b83",
  brightBlue: "#839496", brightMagenta: "#6c71c4", brightCyan: "#93a1a1", brightWhite: "#fdf6e3",
};

const MONOKAI_ANSI = {
  black: "#333333", red: "#f92672", green: "#a6e22e", yellow: "#e6db74",
  blue: "#66d9ef", magenta: "#ae81ff", cyan: "#a1efe4", white: "#f8f8f2",
  brightBlack: "#75715e", brightRed: "#f92672", brightGreen: "#a6e22e", brightYellow: "#e6db74",
  brightBlue: "#66d9ef", brightMagenta: "#ae81ff", brightCyan: "#a1efe4", brightWhite: "#f9f8f5",
};

const solarizedRules = (comment) => [
  { token: "comment", foreground: comment, fontStyle: "italic" },
  { token: "string", foreground: "2aa198" },
  { token: "keyword", foreground: "859900" },
  { token: "number", foreground: "d33682" },
  { token: "type", foreground: "b58900" },
  { token: "delimiter", foreground: comment },
];

export const THEMES = [
  {
    name: "Default Dark Modern",
    kind: "dark",
    page: {
      bg: "#1f1f1f", side: "#181818", bar: "#181818", border: "#2b2b2b", fg: "#cccccc", muted: "#9d9d9d",
      accent: "#0078d4", accentFg: "#ffffff", hover: "#2a2d2e", sel: "#04395e", input: "#313131",
    },
    monaco: { base: "vs-dark", rules: [] },
    terminal: { ansi: DARK_ANSI },
  },
  {
    name: "Default Light Modern",
    kind: "light",
    page: {
      bg: "#ffffff", side: "#f8f8f8", bar: "#f8f8f8", border: "#e5e5e5", fg: "#3b3b3b", muted: "#6e6e6e",
      accent: "#005fb8", accentFg: "#ffffff", hover: "#f0f0f0", sel: "#d8e9fb", input: "#ffffff",
    },
    monaco: { base: "vs", rules: [] },
    terminal: { ansi: LIGHT_ANSI },
  },
  {
    name: "Solarized Dark",
    kind: "dark",
    page: {
      bg: "#002b36", side: "#00212b", bar: "#00212b", border: "#0b3a47", fg: "#93a1a1", muted: "#6c8a91",
      accent: "#268bd2", accentFg: "#ffffff", hover: "#0a3540", sel: "#005a6f", input: "#003847",
    },
    monaco: { base: "vs-dark", rules: solarizedRules("586e75") },
    terminal: { ansi: SOLARIZED_ANSI },
  },
  {
    name: "Solarized Light",
    kind: "light",
    page: {
      bg: "#fdf6e3", side: "#eee8d5", bar: "#eee8d5", border: "#ddd6c1", fg: "#586e75", muted: "#7f8f94",
      accent: "#268bd2", accentFg: "#ffffff", hover: "#e6dfcb", sel: "#dfca88", input: "#fffbf0",
    },
    monaco: { base: "vs", rules: solarizedRules("93a1a1") },
    terminal: { ansi: { ...SOLARIZED_ANSI, white: "#586e75", brightWhite: "#002b36" } },
  },
  {
    name: "Monokai",
    kind: "dark",
    page: {
      bg: "#272822", side: "#1e1f1c", bar: "#1e1f1c", border: "#3b3c35", fg: "#f8f8f2", muted: "#a59f85",
      accent: "#a6e22e", accentFg: "#1e1f1c", hover: "#3e3d32", sel: "#49483e", input: "#414339",
    },
    monaco: {
      base: "vs-dark",
      rules: [
        { token: "comment", foreground: "75715e", fontStyle: "italic" },
        { token: "string", foreground: "e6db74" },
        { token: "keyword", foreground: "f92672" },
        { token: "number", foreground: "ae81ff" },
        { token: "type", foreground: "66d9ef", fontStyle: "italic" },
        { token: "identifier", foreground: "f8f8f2" },
      ],
    },
    terminal: { ansi: MONOKAI_ANSI },
  },
  {
    name: "Quiet Light",
    kind: "light",
    page: {
      bg: "#f5f5f5", side: "#f2f2f2", bar: "#ececec", border: "#e0e0e0", fg: "#333333", muted: "#737373",
      accent: "#705697", accentFg: "#ffffff", hover: "#e8e6ed", sel: "#c4d9b1", input: "#ffffff",
    },
    monaco: {
      base: "vs",
      rules: [
        { token: "comment", foreground: "aaaaaa", fontStyle: "italic" },
        { token: "string", foreground: "448c27" },
        { token: "keyword", foreground: "4b69c6" },
        { token: "number", foreground: "ab6526" },
        { token: "type", foreground: "7a3e9d" },
      ],
    },
    terminal: { ansi: LIGHT_ANSI },
  },
];

export const DEFAULT_THEME = THEMES[0].name;

export function findTheme(name) {
  return THEMES.find((t) => t.name === name) || THEMES[0];
}

/** Monaco's name for our copy of a theme. */
export function monacoThemeId(theme) {
  return "ide-" + theme.name.toLowerCase().replace(/[^a-z0-9]+/g, "-");
}

/** Define every theme in Monaco (backgrounds follow the page palette). */
export function defineMonacoThemes(monaco) {
  for (const theme of THEMES) {
    const p = theme.page;
    monaco.editor.defineTheme(monacoThemeId(theme), {
      base: theme.monaco.base,
      inherit: true,
      rules: theme.monaco.rules,
      colors: {
        "editor.background": p.bg,
        "editor.foreground": p.fg,
        "editorGutter.background": p.bg,
        "editorLineNumber.foreground": p.muted + "99",
        "editorLineNumber.activeForeground": p.fg,
        "editor.lineHighlightBackground": p.hover + "80",
        "editorCursor.foreground": theme.kind === "light" ? "#000000" : p.fg,
        "editorWidget.background": p.side,
        "editorWidget.border": p.border,
        "scrollbarSlider.background": p.muted + "33",
      },
    });
  }
}

export function terminalTheme(theme) {
  const p = theme.page;
  return {
    background: p.bg,
    foreground: p.fg,
    cursor: theme.kind === "light" ? "#333333" : p.fg,
    cursorAccent: p.bg,
    selectionBackground: p.sel,
    ...theme.terminal.ansi,
  };
}

/** Page colours as CSS variables on <html>, and light/dark for form controls and scrollbars. */
export function applyPageTheme(theme) {
  const root = document.documentElement;
  root.dataset.theme = theme.kind;
  for (const [key, value] of Object.entries(theme.page)) {
    root.style.setProperty("--" + key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()), value);
  }
  const meta = document.querySelector('meta[name="color-scheme"]');
  if (meta) meta.content = theme.kind;
}
