import { settingsTable } from '../src/config/settings.js';
import { ERRORS } from '../src/errors.js';
import { toMermaid } from '../src/machines/diagram.js';
import { TRACE_VARIABLES } from '../src/observability/trace-settings.js';
import { sessionMachine } from '../src/machines/session.js';
import { callFaultMatrixMarkdown, faultMatrixMarkdown } from '../test/faults/fault-matrix.js';

/** Markdown table cells: a `|` would end the cell, a `<…>` would read as an HTML tag. */
function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('<', '&lt;');
}

/**
 * README sections generated from the code. Each is written between
 * `<!-- NAME:start -->` and `<!-- NAME:end -->`; `npm run readme` rewrites
 * them and a test fails when the README and the code disagree.
 */
export const GENERATED_SECTIONS: Record<string, () => string> = {
  machine: () => `\`\`\`mermaid\n${toMermaid(sessionMachine)}\n\`\`\``,
  faults: faultMatrixMarkdown,
  'call-faults': callFaultMatrixMarkdown,
  errors: () => {
    const rows = Object.entries(ERRORS).map(
      ([code, e]) => `| \`${code}\` | \`${e.type}\` | ${e.status} | ${e.close ?? '—'} | ${cell(e.message)} |`,
    );
    return ['| code | type | HTTP status | close code | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
  },
  settings: () => {
    const escape = (text: string) => text.replaceAll('|', '\\|');
    const rows = settingsTable().map((r) => `| \`${r.env}\` | ${escape(r.default)} | ${escape(r.description)} |`);
    return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
  },
  traces: () => {
    const rows = TRACE_VARIABLES.map((v) => `| \`${v.env}\` | ${cell(v.default)} | ${cell(v.description)} |`);
    return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
  },
};

export function renderReadme(readme: string): string {
  let out = readme;
  for (const [name, render] of Object.entries(GENERATED_SECTIONS)) {
    const start = `<!-- ${name}:start -->`;
    const end = `<!-- ${name}:end -->`;
    const from = out.indexOf(start);
    const to = out.indexOf(end);
    if (from === -1 || to === -1 || to < from) throw new Error(`README.md lacks the markers ${start} … ${end}`);
    out = `${out.slice(0, from + start.length)}\n${render()}\n${out.slice(to)}`;
  }
  return out;
}
