import { ConfigError } from '../config/settings.js';
import type { Logger } from './logger.js';
import type { LiveLink } from '../server/live-link.js';
import type { SessionObserver } from '../server/session-link.js';

/**
 * Traces are switched on by the standard OpenTelemetry variables, read here
 * without loading anything of OpenTelemetry: a relay that exports no traces
 * never imports the SDK. The SDK's exporter reads the endpoint, headers,
 * timeout and compression variables itself; this module decides whether it
 * runs at all and reads the ones the SDK leaves to its caller.
 */

export type SamplerName = 'always_on' | 'always_off' | 'traceidratio' | 'parentbased_always_on' | 'parentbased_always_off' | 'parentbased_traceidratio';

export interface TraceSettings {
  sampler: SamplerName;
  /** For the ratio samplers: the share of sessions traced, 0 to 1. */
  samplerRatio: number;
  /** Batch span processor: delay between exports, queue size, batch size, export timeout. */
  batch: { scheduledDelayMillis?: number; maxQueueSize?: number; maxExportBatchSize?: number; exportTimeoutMillis?: number };
  /** Where spans go, for the start-up line (origin only: a path or query may carry a token). */
  endpointOrigin: string;
}

/** What the relay gets back when traces are on. */
export interface Tracing {
  /** Pass as (part of) the relay server's `observer`. */
  readonly observer: SessionObserver;
  /** Pass as (part of) the relay server's `sessionStarted`. */
  sessionStarted(link: LiveLink): void;
  /** Ends what is still open, exports what is buffered, and stops. */
  shutdown(): Promise<void>;
}

/** The variables honoured, for the README. */
export const TRACE_VARIABLES: Array<{ env: string; default: string; description: string }> = [
  { env: 'OTEL_EXPORTER_OTLP_ENDPOINT', default: '(none)', description: 'OTLP/HTTP base URL of a collector (e.g. http://127.0.0.1:4318); spans go to <endpoint>/v1/traces. Without it (and without the next one) no trace is made and OpenTelemetry is not loaded.' },
  { env: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', default: '(none)', description: 'Full URL spans are posted to; wins over OTEL_EXPORTER_OTLP_ENDPOINT.' },
  { env: 'OTEL_EXPORTER_OTLP_PROTOCOL', default: 'http/json', description: 'http/json (what is sent) or http/protobuf (accepted: OTLP/HTTP receivers take JSON too); grpc is refused. OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins.' },
  { env: 'OTEL_EXPORTER_OTLP_HEADERS', default: '(none)', description: 'Headers sent with each export, key=value pairs separated by commas (a collector token goes here; it is never logged). OTEL_EXPORTER_OTLP_TRACES_HEADERS adds to them.' },
  { env: 'OTEL_EXPORTER_OTLP_TIMEOUT', default: '10000', description: 'Milliseconds one export may take (also _TRACES_TIMEOUT).' },
  { env: 'OTEL_EXPORTER_OTLP_COMPRESSION', default: 'none', description: 'gzip or none (also _TRACES_COMPRESSION).' },
  { env: 'OTEL_SERVICE_NAME', default: 'realtime-relay', description: 'The service.name of every span.' },
  { env: 'OTEL_RESOURCE_ATTRIBUTES', default: '(none)', description: 'More resource attributes, key=value pairs separated by commas (e.g. deployment.environment.name=prod).' },
  { env: 'OTEL_SDK_DISABLED', default: 'false', description: 'true: no traces, whatever else is set.' },
  { env: 'OTEL_TRACES_EXPORTER', default: 'otlp', description: 'otlp, or none for no traces.' },
  { env: 'OTEL_TRACES_SAMPLER', default: 'parentbased_always_on', description: 'always_on, always_off, traceidratio, or their parentbased_ forms: which sessions are traced (each session is a root).' },
  { env: 'OTEL_TRACES_SAMPLER_ARG', default: '1', description: 'For the ratio samplers: the share of sessions traced, from 0 to 1.' },
  { env: 'OTEL_BSP_SCHEDULE_DELAY', default: '5000', description: 'Milliseconds between two exports of finished spans.' },
  { env: 'OTEL_BSP_MAX_QUEUE_SIZE', default: '2048', description: 'Finished spans kept while waiting for an export; beyond it spans are dropped, never sessions slowed.' },
  { env: 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', default: '512', description: 'Spans per export.' },
  { env: 'OTEL_BSP_EXPORT_TIMEOUT', default: '30000', description: 'Milliseconds the batch processor waits for one export.' },
];

const SAMPLERS = new Set<string>(['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio']);

function value(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const raw = env[name]?.trim();
  return raw === undefined || raw === '' ? undefined : raw;
}

function positiveWhole(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = value(env, name);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new ConfigError(name, 'must be a whole number, at least 1');
  return Number(raw);
}

function endpoint(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const raw = value(env, name);
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, 'must be an http:// or https:// URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(name, 'must be an http:// or https:// URL');
  return url.origin;
}

/**
 * The trace settings, or null when traces are off: no endpoint, the SDK
 * disabled, or the exporter set to none. Throws a ConfigError naming the
 * first wrong variable.
 */
export function traceSettings(env: NodeJS.ProcessEnv = process.env): TraceSettings | null {
  const origin = endpoint(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? endpoint(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  if (origin === undefined) return null;
  if (value(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return null;
  const exporter = value(env, 'OTEL_TRACES_EXPORTER')?.toLowerCase() ?? 'otlp';
  if (exporter === 'none') return null;
  if (exporter !== 'otlp') throw new ConfigError('OTEL_TRACES_EXPORTER', 'must be otlp or none');
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const protocol = value(env, name);
    if (protocol === undefined) continue;
    if (protocol !== 'http/json' && protocol !== 'http/protobuf') throw new ConfigError(name, 'must be http/json or http/protobuf: spans are sent over OTLP/HTTP (a collector listens for it on port 4318), not gRPC');
    break;
  }
  const sampler = value(env, 'OTEL_TRACES_SAMPLER')?.toLowerCase() ?? 'parentbased_always_on';
  if (!SAMPLERS.has(sampler)) throw new ConfigError('OTEL_TRACES_SAMPLER', `must be one of ${[...SAMPLERS].join(', ')}`);
  const ratioText = value(env, 'OTEL_TRACES_SAMPLER_ARG');
  const samplerRatio = ratioText === undefined ? 1 : Number(ratioText);
  if (!Number.isFinite(samplerRatio) || samplerRatio < 0 || samplerRatio > 1) throw new ConfigError('OTEL_TRACES_SAMPLER_ARG', 'must be a number from 0 to 1');
  return {
    sampler: sampler as SamplerName,
    samplerRatio,
    batch: {
      scheduledDelayMillis: positiveWhole(env, 'OTEL_BSP_SCHEDULE_DELAY'),
      maxQueueSize: positiveWhole(env, 'OTEL_BSP_MAX_QUEUE_SIZE'),
      maxExportBatchSize: positiveWhole(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE'),
      exportTimeoutMillis: positiveWhole(env, 'OTEL_BSP_EXPORT_TIMEOUT'),
    },
    endpointOrigin: origin,
  };
}

/**
 * Starts tracing when the variables ask for it; otherwise returns null and
 * loads nothing. The SDK is imported here, on demand, and only here.
 */
export async function startTracing(settings: TraceSettings | null, identity: { instanceId: string }, log: Logger): Promise<Tracing | null> {
  if (settings === null) return null;
  const { createTracing } = await import('./tracing.js');
  const tracing = createTracing(settings, identity, log);
  log.info({ collector: settings.endpointOrigin, sampler: settings.sampler }, `sending session traces to ${settings.endpointOrigin}`);
  return tracing;
}
