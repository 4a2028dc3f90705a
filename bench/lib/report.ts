/** The run as a markdown report, a hand-rolled SVG chart, and the relay / bare pipe ratios. */
import type { Percentiles } from './histogram.js';
import { VARIANT_LABELS, type AudioStep, type RunResult, type Variant } from './results.js';

const VARIANTS: Variant[] = ['direct', 'pipe', 'relay', 'relay-pg'];

function fixed(value: number | null | undefined, digits = 0): string {
  return value === null || value === undefined || Number.isNaN(value) ? '–' : value.toFixed(digits);
}

function thousands(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

function ms(micros: number): string {
  return Number.isNaN(micros) ? '–' : (micros / 1000).toFixed(micros < 10_000 ? 2 : 1);
}

function signedMs(micros: number | null): string {
  if (micros === null || Number.isNaN(micros)) return '–';
  return `${micros >= 0 ? '+' : '−'}${ms(Math.abs(micros))}`;
}

function find(result: RunResult, variant: Variant, sessions: number): AudioStep | undefined {
  return result.audio.find((s) => s.variant === variant && s.sessions === sessions);
}

export type Quantile = 'p50' | 'p99' | 'p999';

/** Latency a variant adds over talking to the simulator directly, µs. */
export function added(result: RunResult, step: AudioStep, direction: 'up' | 'down', q: Quantile): number | null {
  const direct = find(result, 'direct', step.sessions);
  if (!direct || step.variant === 'direct') return null;
  return step[direction][q] - direct[direction][q];
}

/** Worst direction: the larger of what the variant adds client→upstream and upstream→client. */
function addedWorst(result: RunResult, step: AudioStep, q: Quantile): number | null {
  const up = added(result, step, 'up', q);
  const down = added(result, step, 'down', q);
  if (up === null || down === null) return null;
  return Math.max(up, down);
}

function latencyCell(p: Percentiles): string {
  return `${ms(p.p50)} / ${ms(p.p99)} / ${ms(p.p999)}`;
}

export interface Target {
  name: string;
  measured: string;
  met: boolean | null;
}

export interface Ratios {
  perN: Array<{ sessions: number; cpuPerFrame: number | null; p99Up: number | null; p99Down: number | null; framesPerS: number | null }>;
  floodUp: number | null;
  floodDown: number | null;
  setup: number | null;
  /** Relay CPU per session setup. */
  setupCpu: number | null;
  idleHeap: number | null;
  idleRss: number | null;
  /** RSS before any session, and once the idle sessions have closed. */
  restRss: number | null;
  closedRss: number | null;
  /** Full collections during the audio window at N = 300 (relay count, pipe count: a ratio of small counts says little). */
  fullGcs300: { relay: number; pipe: number } | null;
}

/** relay ÷ bare pipe (and relay p99 − bare pipe p99, µs, for latency). */
export function ratios(result: RunResult, variant: Variant = 'relay'): Ratios {
  const sessions = [...new Set(result.audio.map((s) => s.sessions))].sort((a, b) => a - b);
  const perN = sessions.flatMap((n) => {
    const relay = find(result, variant, n);
    const pipe = find(result, 'pipe', n);
    if (!relay || !pipe) return [];
    return [
      {
        sessions: n,
        cpuPerFrame: relay.cpuPerFrameUs !== null && pipe.cpuPerFrameUs ? relay.cpuPerFrameUs / pipe.cpuPerFrameUs : null,
        p99Up: relay.up.p99 - pipe.up.p99,
        p99Down: relay.down.p99 - pipe.down.p99,
        framesPerS: relay.framesPerS / pipe.framesPerS,
      },
    ];
  });
  const flood = (v: Variant) => result.flood.find((s) => s.variant === v);
  const setup = (v: Variant) => result.setup.find((s) => s.variant === v);
  const idle = (v: Variant) => result.idle.find((s) => s.variant === v);
  const divide = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? a / b : null);
  return {
    perN,
    floodUp: divide(flood(variant)?.up.framesPerS, flood('pipe')?.up.framesPerS),
    floodDown: divide(flood(variant)?.down.framesPerS, flood('pipe')?.down.framesPerS),
    setup: divide(setup(variant)?.perSecond, setup('pipe')?.perSecond),
    setupCpu: divide(setup(variant)?.relayCpuMsPerSetup ?? undefined, setup('pipe')?.relayCpuMsPerSetup ?? undefined),
    idleHeap: divide(idle(variant)?.heapPerSessionKb, idle('pipe')?.heapPerSessionKb),
    idleRss: divide(idle(variant)?.rssPerSessionKb, idle('pipe')?.rssPerSessionKb),
    restRss: divide(idle(variant)?.restRssMb, idle('pipe')?.restRssMb),
    closedRss: divide(idle(variant)?.closedRssMb, idle('pipe')?.closedRssMb),
    fullGcs300: gcsAt(result, variant, 300),
  };
}

function gcsAt(result: RunResult, variant: Variant, sessions: number): { relay: number; pipe: number } | null {
  const relay = find(result, variant, sessions)?.fullGcs;
  const pipe = find(result, 'pipe', sessions)?.fullGcs;
  return relay === null || relay === undefined || pipe === null || pipe === undefined ? null : { relay, pipe };
}

/** The audio steps whose CPU per frame is held to a target. */
const CPU_TARGET_N = [10, 100, 300];

/** Minimum setups/s as a share of the bare pipe's, per ledger: PostgreSQL pays a network round trip per write. */
const SETUP_RATIO_TARGET: Partial<Record<Variant, number>> = { relay: 0.7, 'relay-pg': 0.5 };

/** RSS at rest, absolute: what one relay costs before it serves anyone. */
const REST_RSS_TARGET_MB = 100;

/** Share of the idle sessions' RSS growth the relay may keep once they have closed. */
const KEPT_RSS_SHARE = 0.25;

function times(value: number | null, digits = 2): string {
  return value === null ? '–' : `${value.toFixed(digits)}×`;
}

export function targets(result: RunResult): Target[] {
  const list: Target[] = [];
  const relayVariants = (['relay', 'relay-pg'] as Variant[]).filter((v) => result.audio.some((s) => s.variant === v));
  for (const variant of relayVariants) {
    const label = VARIANT_LABELS[variant];
    const r = ratios(result, variant);
    const cpu = r.perN.filter((x) => x.cpuPerFrame !== null && CPU_TARGET_N.includes(x.sessions));
    if (cpu.length > 0) {
      list.push({
        name: `${label}: CPU per forwarded frame ≤ 1.1 × bare pipe at N = ${CPU_TARGET_N.join(', ')}`,
        measured: cpu.map((x) => `N=${x.sessions}: ${x.cpuPerFrame!.toFixed(2)}×`).join(', '),
        met: cpu.every((x) => x.cpuPerFrame! <= 1.1),
      });
    }
    if (r.fullGcs300 !== null) {
      list.push({
        name: `${label}: no more full GCs than the bare pipe at N = 300`,
        measured: `${r.fullGcs300.relay} vs ${r.fullGcs300.pipe} in the window`,
        met: r.fullGcs300.relay <= r.fullGcs300.pipe,
      });
    }
    const served = r.perN.filter((x) => {
      const relay = find(result, variant, x.sessions);
      const pipe = find(result, 'pipe', x.sessions);
      return relay && pipe && !relay.saturated && !pipe.saturated;
    });
    if (served.length > 0) {
      list.push({
        name: `${label}: added p99 ≤ 1 ms over bare pipe (each direction) at every N served without saturating`,
        measured: served.map((x) => `N=${x.sessions}: ${signedMs(x.p99Up)} / ${signedMs(x.p99Down)} ms`).join(', '),
        met: served.every((x) => x.p99Up! <= 1000 && x.p99Down! <= 1000),
      });
    }
    if (r.floodUp !== null && r.floodDown !== null) {
      list.push({
        name: `${label}: saturation throughput ≥ 0.95 × bare pipe`,
        measured: `up ${r.floodUp.toFixed(2)}×, down ${r.floodDown.toFixed(2)}×`,
        met: r.floodUp >= 0.95 && r.floodDown >= 0.95,
      });
    }
    const setup = result.setup.find((s) => s.variant === variant);
    const setupTarget = SETUP_RATIO_TARGET[variant];
    if (setup && r.setup !== null && setupTarget !== undefined) {
      list.push({ name: `${label}: session setups/s with billing on ≥ ${setupTarget} × bare pipe`, measured: `${times(r.setup)} (${setup.perSecond.toFixed(0)}/s)`, met: r.setup >= setupTarget });
    }
    if (setup && r.setupCpu !== null) {
      list.push({ name: `${label}: relay CPU per session setup ≤ 2 × bare pipe`, measured: `${times(r.setupCpu)} (${fixed(setup.relayCpuMsPerSetup, 2)} ms)`, met: r.setupCpu <= 2 });
    }
    const idle = result.idle.find((s) => s.variant === variant);
    if (idle && r.idleHeap !== null) {
      list.push({ name: `${label}: heap per idle session ≤ 2 × bare pipe`, measured: `${times(r.idleHeap)} (${idle.heapPerSessionKb.toFixed(1)} KiB, ${idle.connected} sessions)`, met: r.idleHeap <= 2 });
    }
    if (idle && r.idleRss !== null) {
      list.push({ name: `${label}: RSS per idle session ≤ 2 × bare pipe`, measured: `${times(r.idleRss)} (${idle.rssPerSessionKb.toFixed(1)} KiB)`, met: r.idleRss <= 2 });
    }
    // Runs recorded before these were measured have no rest or closed RSS.
    if (idle && idle.restRssMb !== undefined && idle.closedRssMb !== undefined) {
      list.push({ name: `${label}: RSS at rest ≤ ${REST_RSS_TARGET_MB} MB`, measured: `${idle.restRssMb.toFixed(0)} MB (${times(r.restRss)} bare pipe)`, met: idle.restRssMb <= REST_RSS_TARGET_MB });
      const grown = idle.rssMb - idle.restRssMb;
      const kept = idle.closedRssMb - idle.restRssMb;
      list.push({
        name: `${label}: memory returns: RSS once the idle sessions close ≤ rest + ${KEPT_RSS_SHARE * 100} % of what they added`,
        measured: `${idle.restRssMb.toFixed(0)} → ${idle.rssMb.toFixed(0)} → ${idle.closedRssMb.toFixed(0)} MB (kept ${fixed(grown > 0 ? (kept / grown) * 100 : null)} %; ${times(r.closedRss)} bare pipe after close)`,
        met: kept <= Math.max(0, grown) * KEPT_RSS_SHARE,
      });
    }
  }
  const iso = result.isolation;
  if (iso) {
    const delta = iso.withSlow.p99 - iso.baseline.p99;
    list.push({
      name: 'a response.done waiting for its charge delays only its own session',
      measured: `slow session's response.done waited ${ms(iso.slowDoneGap.p50)} ms (charge delayed ${iso.slowChargeMs} ms); others' delta p99 ${ms(iso.withSlow.p99)} ms vs ${ms(iso.baseline.p99)} ms without (${signedMs(delta)} ms), others' response.done p50 ${ms(iso.othersDoneGap.p50)} ms`,
      // Two runs of the same load differ by noise: "unaffected" allows 1 ms or 10 % of the p99, whichever is larger.
      met: iso.slowDoneGap.p50 >= iso.slowChargeMs * 1000 * 0.9 && delta <= Math.max(1000, 0.1 * iso.baseline.p99) && iso.othersDoneGap.p99 < iso.slowChargeMs * 1000 * 0.5,
    });
  }
  return list;
}

/** Where each variant stopped keeping up. */
export function saturationPoints(result: RunResult): Array<{ variant: Variant; servedUpTo: number | null; saturatedAt: number | null; why: string }> {
  return VARIANTS.filter((v) => result.audio.some((s) => s.variant === v)).map((variant) => {
    const steps = result.audio.filter((s) => s.variant === variant).sort((a, b) => a.sessions - b.sessions);
    const first = steps.find((s) => s.saturated);
    const served = steps.filter((s) => !s.saturated).at(-1);
    return { variant, servedUpTo: served?.sessions ?? null, saturatedAt: first?.sessions ?? null, why: first?.saturation.join('; ') ?? '' };
  });
}

export function markdown(result: RunResult): string {
  const m = result.machine;
  const lines: string[] = [];
  lines.push(`# realtime-relay benchmark, ${result.startedAt}${result.quick ? ' (--quick)' : ''}`);
  lines.push('');
  lines.push(`Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memory} RAM, Node ${m.node}, ${m.os}; load average at start ${m.loadAverage.map((x) => x.toFixed(2)).join(' ')}; open files ${m.openFiles.soft}/${m.openFiles.hard}.`);
  const repeat = Number(result.settings.repeat ?? 1);
  lines.push(`Load generator, simulator and relay share the machine, each in its own process. Steps of ${result.stepSeconds} s${repeat > 1 ? ` (each audio step measured ${repeat} times round-robin over the variants; shown: the median, by relay CPU per frame, of the repeats least disturbed by other processes)` : ''}; latency is read at the receiver from a send stamp in the frame (same monotonic clock); "added" is the variant minus direct at the same N.`);
  lines.push('');
  lines.push('## Audio-rate sessions');
  lines.push('');
  lines.push('Each session appends 20 ms of 24 kHz PCM16 every 20 ms and receives a continuous audio response streamed at the same rate, one `response.create` → `response.done` (charged) after another.');
  lines.push('');
  lines.push('| N | variant | frames/s | MB/s up / down | upstream→client ms p50 / p99 / p99.9 | added ms p50 / p99 / p99.9 | client→upstream p99 ms (added) | relay CPU % | CPU µs / frame | RSS MB | heap / session KiB | full GCs | ledger writes/s | errors | status |');
  lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  const sessions = [...new Set([...result.audio.map((s) => s.sessions), ...result.skipped.map((s) => s.sessions)])].sort((a, b) => a - b);
  for (const n of sessions) {
    for (const variant of VARIANTS) {
      const step = find(result, variant, n);
      const skipped = result.skipped.find((s) => s.variant === variant && s.sessions === n);
      if (skipped) {
        lines.push(`| ${n} | ${VARIANT_LABELS[variant]} | | | | | | | | | | | | | not run: saturated at N=${skipped.saturatedAt} |`);
        continue;
      }
      if (!step) continue;
      const addedDown = variant === 'direct' ? '–' : `${signedMs(added(result, step, 'down', 'p50'))} / ${signedMs(added(result, step, 'down', 'p99'))} / ${signedMs(added(result, step, 'down', 'p999'))}`;
      const addedUp = variant === 'direct' ? '' : ` (${signedMs(added(result, step, 'up', 'p99'))})`;
      lines.push(
        `| ${n} | ${VARIANT_LABELS[variant]} | ${thousands(step.framesPerS)} | ${fixed(step.mbPerSUp, 1)} / ${fixed(step.mbPerSDown, 1)} | ${latencyCell(step.down)} | ${addedDown} | ${ms(step.up.p99)}${addedUp} | ${fixed(step.cpu.relay)} | ${fixed(step.cpuPerFrameUs, 1)} | ${fixed(step.rssMb)} | ${fixed(step.heapPerSessionKb, 1)} | ${fixed(step.fullGcs)} | ${fixed(step.ledgerWritesPerS, 1)} | ${step.errors} | ${step.saturated ? `**saturated**: ${step.saturation.join('; ')}` : 'ok'} |`,
      );
    }
  }
  lines.push('');
  lines.push('CPU of the other parties per step (% of one core): ' + result.audio.map((s) => `${VARIANT_LABELS[s.variant]}@${s.sessions}: simulator ${s.cpu.simulator.toFixed(0)}, load generator ${s.cpu.loadgen.toFixed(0)}, outside the benchmark ${s.cpu.others.toFixed(0)}`).join('; ') + '.');
  lines.push('');
  lines.push('Saturation point per variant: ' + saturationPoints(result).map((p) => `${VARIANT_LABELS[p.variant]} serves ${p.servedUpTo ?? 'none'}${p.saturatedAt ? `, saturates at N=${p.saturatedAt} (${p.why})` : ' (no saturation in the steps run)'}`).join('; ') + '.');
  if (result.flood.length > 0) {
    lines.push('');
    lines.push('## Saturation (a few sessions as fast as the relay accepts)');
    lines.push('');
    lines.push('| variant | sessions | up frames/s | up MB/s | down frames/s | down MB/s | relay CPU % up / down | errors |');
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const s of result.flood) {
      lines.push(`| ${VARIANT_LABELS[s.variant]} | ${s.sessions} | ${thousands(s.up.framesPerS)} | ${s.up.mbPerS.toFixed(1)} | ${thousands(s.down.framesPerS)} | ${s.down.mbPerS.toFixed(1)} | ${fixed(s.up.cpu.relay)} / ${fixed(s.down.cpu.relay)} | ${s.errors} |`);
    }
  }
  if (result.setup.length > 0) {
    lines.push('');
    lines.push('## Setup rate (open to `session.created`, close, repeat)');
    lines.push('');
    lines.push('| variant | concurrency | setups/s | latency ms p50 / p99 | relay CPU % | relay CPU ms / setup | ledger writes/s | failures |');
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const s of result.setup) {
      lines.push(`| ${VARIANT_LABELS[s.variant]} | ${s.concurrency} | ${s.perSecond.toFixed(0)} | ${s.latencyMs.p50.toFixed(1)} / ${s.latencyMs.p99.toFixed(1)} | ${fixed(s.cpu.relay)} | ${fixed(s.relayCpuMsPerSetup, 2)} | ${fixed(s.ledgerWritesPerS)} | ${s.failed} |`);
    }
  }
  if (result.idle.length > 0) {
    lines.push('');
    lines.push('## Idle sessions (connected, silent; each holds two sockets in the relay)');
    lines.push('');
    lines.push('| variant | sessions | heap / session KiB | RSS / session KiB | external / session KiB | heap MB | RSS MB: at rest → idle sessions open → closed | heap MB after close |');
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const s of result.idle) {
      lines.push(`| ${VARIANT_LABELS[s.variant]} | ${s.connected}${s.failed ? ` (${s.failed} failed)` : ''} | ${s.heapPerSessionKb.toFixed(1)} | ${s.rssPerSessionKb.toFixed(1)} | ${s.externalPerSessionKb.toFixed(1)} | ${s.heapUsedMb.toFixed(0)} | ${fixed(s.restRssMb)} → ${s.rssMb.toFixed(0)} → ${fixed(s.closedRssMb)} | ${fixed(s.closedHeapUsedMb)} |`);
    }
  }
  if (result.isolation) {
    const iso = result.isolation;
    lines.push('');
    lines.push('## A slow charge delays only its own session');
    lines.push('');
    lines.push(`${iso.sessions} audio-rate sessions on the relay, then the same plus one whose every charge is held ${iso.slowChargeMs} ms before it is written (a bench-only ledger wrapper), back to back. Unaffected means: the others' p99 within 1 ms or 10 % of the run without, and their response.done not held.`);
    lines.push('');
    lines.push('| | others: delta ms p50 / p99 / p99.9 | others: last delta → response.done ms p50 / p99 | slow session: last delta → response.done ms p50 |');
    lines.push('|---|---:|---:|---:|');
    lines.push(`| without the slow session | ${latencyCell(iso.baseline)} | | |`);
    lines.push(`| with it | ${latencyCell(iso.withSlow)} | ${ms(iso.othersDoneGap.p50)} / ${ms(iso.othersDoneGap.p99)} | ${ms(iso.slowDoneGap.p50)} |`);
  }
  lines.push('');
  lines.push('## Targets');
  lines.push('');
  lines.push('| target | measured | met |');
  lines.push('|---|---|---|');
  for (const t of targets(result)) lines.push(`| ${t.name} | ${t.measured} | ${t.met === null ? '–' : t.met ? 'yes' : '**no**'} |`);
  lines.push('');
  lines.push('## Relay ÷ bare pipe');
  lines.push('');
  lines.push(ratioText(result));
  if (result.notes.length > 0) {
    lines.push('');
    lines.push('## Notes');
    lines.push('');
    for (const note of result.notes) lines.push(`- ${note}`);
  }
  lines.push('');
  lines.push('![added latency and throughput against N](latest.svg)');
  lines.push('');
  return lines.join('\n');
}

export function ratioText(result: RunResult): string {
  const out: string[] = [];
  for (const variant of ['relay', 'relay-pg'] as Variant[]) {
    if (!result.audio.some((s) => s.variant === variant) && !result.flood.some((s) => s.variant === variant)) continue;
    const r = ratios(result, variant);
    const perN = r.perN
      .map((x) => `N=${x.sessions}: CPU/frame ${fixed(x.cpuPerFrame, 2)}×, frames/s ${fixed(x.framesPerS, 2)}×, p99 ${signedMs(x.p99Up)} ms up / ${signedMs(x.p99Down)} ms down`)
      .join('; ');
    const gcs = r.fullGcs300 === null ? '–' : `${r.fullGcs300.relay} vs ${r.fullGcs300.pipe}`;
    out.push(
      `- ${VARIANT_LABELS[variant]}: ${perN || 'no audio steps in common'}; saturation up ${fixed(r.floodUp, 2)}×, down ${fixed(r.floodDown, 2)}×; setups/s ${fixed(r.setup, 2)}×, relay CPU/setup ${fixed(r.setupCpu, 2)}×; idle heap/session ${fixed(r.idleHeap, 2)}×, RSS/session ${fixed(r.idleRss, 2)}×; RSS at rest ${fixed(r.restRss, 2)}×, after the idle sessions close ${fixed(r.closedRss, 2)}×; full GCs at N=300 ${gcs}`,
    );
  }
  return out.join('\n');
}

// ---- chart ------------------------------------------------------------------

const COLORS: Record<Variant, string> = { direct: '#888888', pipe: '#1f77b4', relay: '#d62728', 'relay-pg': '#2ca02c' };

interface Series {
  variant: Variant;
  points: Array<{ x: number; y: number; saturated: boolean }>;
}

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

function niceMax(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

/** Gridlines for a nice maximum: 5 for 2.5, 5 and 10 (…), 4 for 1 and 2 (…). */
function divisions(max: number): number {
  const lead = max / 10 ** Math.floor(Math.log10(max));
  return lead === 1 || lead === 2 ? 4 : 5;
}

function panel(title: string, yLabel: string, series: Series[], xs: number[], left: number, top: number, width: number, height: number, latency: boolean): string {
  const parts: string[] = [];
  // Saturated latencies can be orders of magnitude off: that scale follows the served steps, and what lies beyond is pinned to the edge.
  const served = series.flatMap((s) => s.points.filter((p) => !p.saturated).map((p) => p.y));
  const all = latency && served.length > 0 ? served : series.flatMap((s) => s.points.map((p) => p.y));
  const yMaxRaw = Math.max(0, ...all);
  const yMinRaw = latency ? Math.min(0, ...all) : 0;
  const yMax = niceMax(yMaxRaw);
  const yMin = yMinRaw < 0 ? -niceMax(-yMinRaw) : 0;
  const logMin = Math.log10(Math.min(...xs));
  const logMax = Math.log10(Math.max(...xs));
  const px = (x: number) => left + (logMax === logMin ? width / 2 : ((Math.log10(x) - logMin) / (logMax - logMin)) * width);
  const py = (y: number) => top + height - ((Math.min(Math.max(y, yMin), yMax) - yMin) / (yMax - yMin || 1)) * height;
  parts.push(`<text x="${left + width / 2}" y="${top - 14}" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(title)}</text>`);
  parts.push(`<rect x="${left}" y="${top}" width="${width}" height="${height}" fill="none" stroke="#ccc"/>`);
  const steps = divisions(yMax);
  for (let i = 0; i <= steps; i++) {
    const y = yMin + ((yMax - yMin) * i) / steps;
    parts.push(`<line x1="${left}" x2="${left + width}" y1="${py(y)}" y2="${py(y)}" stroke="#eee"/>`);
    parts.push(`<text x="${left - 6}" y="${py(y) + 4}" text-anchor="end" font-size="11">${Number(y.toPrecision(3))}</text>`);
  }
  if (yMin < 0) parts.push(`<line x1="${left}" x2="${left + width}" y1="${py(0)}" y2="${py(0)}" stroke="#999"/>`);
  for (const x of xs) {
    parts.push(`<line x1="${px(x)}" x2="${px(x)}" y1="${top}" y2="${top + height}" stroke="#f3f3f3"/>`);
    parts.push(`<text x="${px(x)}" y="${top + height + 16}" text-anchor="middle" font-size="11">${x}</text>`);
  }
  parts.push(`<text x="${left + width / 2}" y="${top + height + 34}" text-anchor="middle" font-size="12">concurrent audio-rate sessions (N, log scale)</text>`);
  parts.push(`<text transform="translate(${left - 44} ${top + height / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escapeXml(yLabel)}</text>`);
  for (const s of series) {
    if (s.points.length === 0) continue;
    const d = s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${COLORS[s.variant]}" stroke-width="2"/>`);
    for (const p of s.points) {
      const cx = px(p.x).toFixed(1);
      const cy = py(p.y).toFixed(1);
      if (p.y > yMax) parts.push(`<text x="${(Number(cx) - 6).toFixed(1)}" y="${top + 14 + 12 * series.indexOf(s)}" text-anchor="end" font-size="10" fill="${COLORS[s.variant]}">▲ ${Number(p.y.toPrecision(3))}</text>`);
      parts.push(
        p.saturated
          ? `<circle cx="${cx}" cy="${cy}" r="4.5" fill="white" stroke="${COLORS[s.variant]}" stroke-width="2"><title>${VARIANT_LABELS[s.variant]} N=${p.x}: ${p.y.toFixed(2)} (saturated)</title></circle>`
          : `<circle cx="${cx}" cy="${cy}" r="3.5" fill="${COLORS[s.variant]}"><title>${VARIANT_LABELS[s.variant]} N=${p.x}: ${p.y.toFixed(2)}</title></circle>`,
      );
    }
  }
  return parts.join('\n');
}

export function chart(result: RunResult): string {
  const xs = [...new Set(result.audio.map((s) => s.sessions))].sort((a, b) => a - b);
  const width = 960;
  const height = 430;
  if (xs.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="60"><text x="10" y="30">no audio steps</text></svg>`;
  const present = VARIANTS.filter((v) => result.audio.some((s) => s.variant === v));
  const latency: Series[] = present
    .filter((v) => v !== 'direct')
    .map((variant) => ({
      variant,
      points: result.audio
        .filter((s) => s.variant === variant)
        .sort((a, b) => a.sessions - b.sessions)
        .flatMap((s) => {
          const y = addedWorst(result, s, 'p99');
          return y === null ? [] : [{ x: s.sessions, y: y / 1000, saturated: s.saturated }];
        }),
    }));
  const throughput: Series[] = present.map((variant) => ({
    variant,
    points: result.audio
      .filter((s) => s.variant === variant)
      .sort((a, b) => a.sessions - b.sessions)
      .map((s) => ({ x: s.sessions, y: s.framesPerS / 1000, saturated: s.saturated })),
  }));
  const legend = present
    .map((v, i) => `<g transform="translate(${90 + i * 170} ${height - 18})"><rect width="14" height="4" y="-6" fill="${COLORS[v]}"/><text x="20" y="0" font-size="12">${escapeXml(VARIANT_LABELS[v])}</text></g>`)
    .join('\n');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    panel('Added p99 latency per frame vs direct (worse direction)', 'ms', latency, xs, 70, 40, 360, 280, true),
    panel('Frames forwarded per second (both directions)', 'thousand frames/s', throughput, xs, 560, 40, 360, 280, false),
    legend,
    `<text x="${width - 10}" y="${height - 18}" text-anchor="end" font-size="11" fill="#666">hollow point: saturated step</text>`,
    '</svg>',
  ].join('\n');
}
