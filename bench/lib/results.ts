/** What one benchmark run measured: the shapes written to bench/results/<timestamp>.json. */
import type { Percentiles } from './histogram.js';

export type Variant = 'direct' | 'pipe' | 'relay' | 'relay-pg';

export const VARIANT_LABELS: Record<Variant, string> = {
  direct: 'direct',
  pipe: 'bare pipe',
  relay: 'relay',
  'relay-pg': 'relay + Postgres',
};

export interface CpuShare {
  /** % of one core over the window; null when the variant has no relay process. */
  relay: number | null;
  simulator: number;
  loadgen: number;
  /** Share of all cores busy, 0–100 (everything on the machine). */
  machine: number;
  /** % of one core used by processes outside the benchmark (other work on the machine) over the window. */
  others: number;
}

export interface AudioStep {
  variant: Variant;
  sessions: number;
  windowS: number;
  offeredAppendsPerS: number;
  appendsPerS: number;
  deltasPerS: number;
  /** Frames crossing the relay per second, both directions (counted at the receivers). */
  framesPerS: number;
  mbPerSUp: number;
  mbPerSDown: number;
  /** Client → upstream (appends) and upstream → client (audio deltas), µs. */
  up: Percentiles;
  down: Percentiles;
  /** Last audio delta → response.done at the client (the charge is written in between), µs. */
  doneGap: Percentiles;
  cpu: CpuShare;
  /** Relay CPU time per forwarded frame, µs. */
  cpuPerFrameUs: number | null;
  rssMb: number | null;
  heapPerSessionKb: number | null;
  /** Full (mark-compact) collections in the relay process during the window. */
  fullGcs: number | null;
  ledgerWritesPerS: number | null;
  chargesPerS: number | null;
  responsesPerS: number;
  errors: number;
  errorSamples: string[];
  saturated: boolean;
  saturation: string[];
}

export interface FloodDirection {
  framesPerS: number;
  mbPerS: number;
  latency: Percentiles;
  cpu: CpuShare;
  cpuPerFrameUs: number | null;
}

export interface FloodStep {
  variant: Variant;
  sessions: number;
  up: FloodDirection;
  down: FloodDirection;
  errors: number;
}

export interface SetupStep {
  variant: Variant;
  concurrency: number;
  seconds: number;
  perSecond: number;
  completed: number;
  failed: number;
  failures: string[];
  latencyMs: { p50: number; p99: number };
  cpu: CpuShare;
  relayCpuMsPerSetup: number | null;
  ledgerWritesPerS: number | null;
}

export interface IdleStep {
  variant: Variant;
  sessions: number;
  connected: number;
  failed: number;
  connectMs: number;
  heapPerSessionKb: number;
  rssPerSessionKb: number;
  externalPerSessionKb: number;
  heapUsedMb: number;
  rssMb: number;
  /** The relay process's RSS before any session (after a full GC). */
  restRssMb: number;
  /** Its RSS once every idle session has closed (after a full GC): what it gave back. */
  closedRssMb: number;
  closedHeapUsedMb: number;
}

export interface IsolationStep {
  sessions: number;
  slowChargeMs: number;
  /** Other sessions' audio delta latency without and with one slow-charging session, µs. */
  baseline: Percentiles;
  withSlow: Percentiles;
  othersDoneGap: Percentiles;
  slowDoneGap: Percentiles;
  slowDeltas: number;
}

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memory: string;
  node: string;
  os: string;
  loadAverage: number[];
  openFiles: { soft: number; hard: number };
}

export interface RunResult {
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  stepSeconds: number;
  machine: MachineInfo;
  settings: Record<string, unknown>;
  audio: AudioStep[];
  /** With --repeat: every repeat of every audio step (`audio` holds the least disturbed of each). */
  audioRepeats: AudioStep[];
  /** Audio steps not run because the variant had saturated at a smaller N. */
  skipped: Array<{ variant: Variant; sessions: number; saturatedAt: number }>;
  flood: FloodStep[];
  setup: SetupStep[];
  idle: IdleStep[];
  isolation: IsolationStep | null;
  notes: string[];
}
