#!/usr/bin/env node
// Runs the compiled relay: `npm install` builds it to dist/ (the prepare
// script), `npm run build` rebuilds it. Running JavaScript rather than the
// TypeScript source keeps a compiler out of the process users run.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write('realtime-relay is not built (dist/cli/main.js is missing): run npm run build\n');
  process.exit(1);
}
await import(main.href);
