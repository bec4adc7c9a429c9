// ANSI SGR colours and styles of one log line, as DOM nodes. The text goes in as text nodes;
// colours become classes (the 16 named ones) or CSSOM styles (256-colour and truecolor), so no
// markup and no inline style attribute is ever parsed: the page's CSP forbids both.
import { createColorPalette, parseAnsiSequences } from 'ansi-sequence-parser';

const palette = createColorPalette();
// Only SGR sequences reach the parser: it reads every "ESC [" up to the next "m" as one, so any
// other escape sequence (cursor moves, titles, hyperlinks) is removed first, and so is a lone ESC.
const ESCAPES = /\x1b\[[0-9;:]*m|\x1b\[[0-?]*[ -/]*[@-~]?|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]?/g;
const DECORATION_CLASSES = {
  bold: 'b', dim: 'dim', italic: 'i', underline: 'u', strikethrough: 's', reverse: 'rev', hidden: 'hid', overline: 'o',
};

function kebab(name) {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function sgrOnly(text) {
  return text.replace(ESCAPES, (sequence) => (sequence.endsWith('m') && sequence[1] === '[' ? sequence.replaceAll(':', ';') : ''));
}

/** Append `text` (one line, maybe with SGR sequences) to `parent` as styled spans. */
export function renderAnsi(parent, text) {
  if (!text.includes('\x1b')) {
    parent.append(text);
    return;
  }
  for (const token of parseAnsiSequences(sgrOnly(text))) {
    if (!token.value) continue;
    if (!token.foreground && !token.background && token.decorations.size === 0) {
      parent.append(token.value);
      continue;
    }
    const span = document.createElement('span');
    span.textContent = token.value;
    const classes = [];
    for (const decoration of token.decorations) classes.push(DECORATION_CLASSES[decoration] || '');
    for (const [color, prefix, property] of [[token.foreground, 'fg', 'color'], [token.background, 'bg', 'backgroundColor']]) {
      if (!color) continue;
      if (color.type === 'named') classes.push(`${prefix}-${kebab(color.name)}`);
      else span.style[property] = palette.value(color);
    }
    span.className = classes.join(' ').trim();
    parent.append(span);
  }
}

/** The text without any escape sequence (for snippets and copying). */
export function plain(text) {
  return text.replace(ESCAPES, '');
}
