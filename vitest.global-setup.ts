import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/*
 * The process tests spawn bin/relay.mjs, which runs the compiled dist/. Building
 * it once before every run makes them exercise the code under test, never a
 * build left over from an earlier checkout. The build is incremental
 * (dist/.tsbuildinfo): about 3 s when nothing changed, 12 s from nothing.
 */
export default function buildRelay(): void {
  const root = fileURLToPath(new URL('.', import.meta.url));
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const started = performance.now();
  try {
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe' });
  } catch (error) {
    const output = String((error as { stdout?: Buffer }).stdout ?? '') + String((error as { stderr?: Buffer }).stderr ?? '');
    throw new Error(`npm run build failed, so the relay the process tests run would not be this code:\n${output}`);
  }
  if (process.env.CI) process.stdout.write(`built dist/ in ${Math.round(performance.now() - started)} ms\n`);
}
