/**
 * `tsx bench/report.ts [bench/results/<timestamp>.json]`: writes the markdown
 * and the chart of a finished run again (the newest run by default) and
 * makes them latest.md and latest.svg.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chart, markdown, ratioText } from './lib/report.js';
import type { RunResult } from './lib/results.js';

const results = fileURLToPath(new URL('./results/', import.meta.url));
const file =
  process.argv[2] ??
  join(
    results,
    readdirSync(results)
      .filter((name) => name.endsWith('.json'))
      .sort()
      .at(-1) ?? '',
  );
const result = JSON.parse(readFileSync(file, 'utf8')) as RunResult;
const stamp = basename(file, '.json');
const dir = dirname(file);
const md = markdown(result);
writeFileSync(join(dir, `${stamp}.md`), md.replace('](latest.svg)', `](${stamp}.svg)`));
writeFileSync(join(dir, `${stamp}.svg`), chart(result));
writeFileSync(join(dir, 'latest.md'), md);
writeFileSync(join(dir, 'latest.svg'), chart(result));
console.log(md);
console.log('relay ÷ bare pipe:');
console.log(ratioText(result));
