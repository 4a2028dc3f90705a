/**
 * Nanoseconds per frame for reading an event's type (`scanEventType`), on the
 * frames a session carries most: audio appends and deltas of 20 ms and 100 ms.
 *
 *   npx tsx bench/scan-type.ts [frame-type module ...]
 *
 * With several modules (say an older copy and the current one), their rounds
 * are interleaved so that a busy machine slows each of them alike. Time is the
 * process's CPU time, not the wall clock, and the fastest of the rounds is
 * reported: what the scan costs when nothing else interferes.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

type Scan = (data: Buffer) => string | undefined;
const paths = process.argv.length > 2 ? process.argv.slice(2) : [new URL('../src/protocol/frame-type.ts', import.meta.url).pathname];
const modules: Array<{ path: string; scan: Scan }> = [];
for (const path of paths) {
  const { scanEventType } = (await import(pathToFileURL(resolve(path)).href)) as { scanEventType: Scan };
  modules.push({ path, scan: scanEventType });
}

/** Base64 of `ms` milliseconds of 24 kHz mono PCM16 (48 bytes per ms). */
function audio(ms: number): string {
  return Buffer.from(Array.from({ length: 48 * ms }, (_, i) => (i * 31) & 0xff)).toString('base64');
}

const ids = '"event_id":"event_B4xq0c1Lr9ZtQm","response_id":"resp_C8mN2kP0aQ","item_id":"item_C8mN2kP1bR","output_index":0,"content_index":0';
const FRAMES: Array<[string, string]> = [
  ['client append 20 ms', `{"type":"input_audio_buffer.append","audio":"${audio(20)}"}`],
  ['client append 100 ms', `{"type":"input_audio_buffer.append","audio":"${audio(100)}"}`],
  ['client append 20 ms, event_id last', `{"type":"input_audio_buffer.append","audio":"${audio(20)}","event_id":"evt_000123"}`],
  ['server audio delta 20 ms', `{"type":"response.output_audio.delta",${ids},"delta":"${audio(20)}"}`],
  ['server audio delta 100 ms', `{"type":"response.output_audio.delta",${ids},"delta":"${audio(100)}"}`],
  ['client response.create', '{"type":"response.create","response":{"output_modalities":["audio"],"instructions":"Answer briefly."}}'],
];

function nsPerFrame(scan: Scan, data: Buffer, iterations: number): number {
  let sink = 0;
  const start = process.cpuUsage();
  for (let i = 0; i < iterations; i++) sink += scan(data)!.length;
  const used = process.cpuUsage(start);
  if (sink === 0) throw new Error('nothing was read');
  return ((used.user + used.system) * 1_000) / iterations;
}

const ROUNDS = 15;
const ITERATIONS = 100_000;

console.log(`frame${' '.repeat(34)}bytes  ${modules.map((_, i) => `  module ${i + 1}`).join('')}  (ns/frame)`);
for (const [name, text] of FRAMES) {
  const data = Buffer.from(text);
  const best = modules.map(() => Infinity);
  for (const { scan } of modules) {
    if (scan(data) === undefined) throw new Error(`${name}: not read`);
    nsPerFrame(scan, data, ITERATIONS); // warm up: let the JIT settle on this shape
  }
  for (let round = 0; round < ROUNDS; round++) {
    modules.forEach(({ scan }, i) => (best[i] = Math.min(best[i]!, nsPerFrame(scan, data, ITERATIONS))));
  }
  console.log(`${name.padEnd(38)} ${String(data.length).padStart(6)}  ${best.map((ns) => ns.toFixed(0).padStart(10)).join('')}`);
}
modules.forEach(({ path }, i) => console.log(`module ${i + 1}: ${path}`));
