// Preloaded into a relay process (node --import): when the process exits,
// writes the files of every CommonJS module it loaded to the file named by
// LOADED_MODULES_FILE. OpenTelemetry's packages are CommonJS, so a relay
// that imported them, even from ESM, lists them here.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const file = process.env.LOADED_MODULES_FILE;
if (file) process.on('exit', () => writeFileSync(file, JSON.stringify(Object.keys(require.cache))));
