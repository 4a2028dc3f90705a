import { describe, expect, it } from 'vitest';
import type { UsageRow } from '../../src/billing/ledger/index.js';
import { usageCsv } from '../../src/server/admin/operations.js';

function row(keyName: string): UsageRow {
  return { at: new Date('2026-11-01T12:00:00Z'), keyName, sessionId: 'sess_1', kind: 'response', itemId: 'resp_1', model: 'gpt-realtime', costNano: 12_000_000n, usage: null };
}

/** RFC 4180, as a spreadsheet that honours quotes reads it with `separator`. */
function parseCsv(text: string, separator: string): string[][] {
  const rows: string[][] = [];
  let cells: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') (cell += '"'), i++;
      else if (char === '"') quoted = false;
      else cell += char;
    } else if (char === '"' && cell === '') quoted = true;
    else if (char === separator) cells.push(cell), (cell = '');
    else if (char === '\n') cells.push(cell), rows.push(cells), (cells = []), (cell = '');
    else cell += char;
  }
  return rows;
}

/** Every cell a reader could open: split on each separator a spreadsheet may use, with or without quotes, and on line breaks. */
function everyCellStart(text: string): string[] {
  const naive = text.split(/[,;\t\r\n]/).map((cell) => cell.replace(/^"+/, ''));
  const quoted = [',', ';', '\t'].flatMap((separator) => parseCsv(text, separator).flat());
  return [...naive, ...quoted];
}

const FORMULA_START = /^[=+\-@\t\r]/;

const HOSTILE_NAMES = ['a,=cmd()', 'a;=cmd()', 'a;"=cmd()', '=HYPERLINK("http://x")', '+1', '-1+2', '@SUM(1)', 'x\n=1+1', '"=1+1', 'a\t=cmd()'];

describe('the usage CSV', () => {
  it('opens in a spreadsheet with no cell that starts a formula, whatever separator it splits on', () => {
    const csv = usageCsv(HOSTILE_NAMES.map(row));
    for (const cell of everyCellStart(csv)) expect(cell).not.toMatch(FORMULA_START);
  });

  it('reads back with RFC 4180 as one row per charge, seven fields each, the key name intact after its "\'" guards', () => {
    const rows = parseCsv(usageCsv(HOSTILE_NAMES.map(row)), ',');
    expect(rows).toHaveLength(HOSTILE_NAMES.length + 1);
    for (const fields of rows) expect(fields).toHaveLength(7);
    expect(rows.slice(1).map((fields) => fields[1])).toEqual([
      "a,'=cmd()",
      "a;'=cmd()",
      'a;\'"=cmd()',
      '\'=HYPERLINK("http://x")',
      "'+1",
      "'-1+2",
      "'@SUM(1)",
      "x\n'=1+1",
      '\'"=1+1',
      "a\t'=cmd()",
    ]);
  });

  it('leaves an ordinary row as it is', () => {
    expect(usageCsv([row('web-alice')])).toBe('at,key,session_id,kind,item_id,model,cost_usd\n2026-11-01T12:00:00.000Z,web-alice,sess_1,response,resp_1,gpt-realtime,0.012000\n');
  });
});
