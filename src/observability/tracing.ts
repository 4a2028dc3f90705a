import { DiagLogLevel, ROOT_CONTEXT, SpanKind, SpanStatusCode, diag, trace, type Attributes, type Context, type DiagLogger, type Span, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
} from '@opentelemetry/sdk-trace';
import { usdFloat } from '../billing/prices.js';
import type { RelayError } from '../errors.js';
import type { LiveLink } from '../server/live-link.js';
import type { ResponseDone, SessionSummary } from '../server/ports.js';
import type { SessionObserver } from '../server/session-link.js';
import { warnAtMostEveryHalfMinute, type Logger } from './logger.js';
import type { TraceSettings, Tracing } from './trace-settings.js';

/**
 * Each session is one trace: a root span from the accepted upgrade to its
 * settlement, with a child span per upstream dial attempt, per response
 * (asked for or started upstream, until its `response.done` is charged) and
 * for the settlement write. Spans are made from lifecycle facts the relay
 * already has, never from frames. Attributes name the key (never the key
 * itself) and carry nothing of a frame's content.
 */

const DEFAULT_SERVICE_NAME = 'realtime-relay';

/**
 * Epoch milliseconds, to the microsecond, from the monotonic clock. Every
 * span's start and end is given from it: spans placed from a duration
 * (`ms` ago) then line up with the others, and none runs backwards.
 */
function now(): number {
  return performance.timeOrigin + performance.now();
}

function samplerFor(settings: TraceSettings): Sampler {
  switch (settings.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(settings.samplerRatio);
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(settings.samplerRatio) });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

/** Integer nano-USD as an attribute: an int while a float holds it exactly, a decimal string beyond. */
function nanoAttribute(nano: bigint): number | string {
  return nano <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(nano) : nano.toString();
}

function costAttributes(nano: bigint): Attributes {
  return { 'relay.cost.nano_usd': nanoAttribute(nano), 'relay.cost.usd': usdFloat(nano) };
}

function tokenCount(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
}

/** Token counts from a usage object as the upstream sent it; absent or odd fields are left out. */
function usageAttributes(usage: unknown): Attributes {
  if (typeof usage !== 'object' || usage === null) return {};
  const u = usage as { input_tokens?: unknown; output_tokens?: unknown; total_tokens?: unknown; input_token_details?: { cached_tokens?: unknown } | null };
  const attributes: Attributes = {};
  const pairs: Array<[string, number | undefined]> = [
    ['gen_ai.usage.input_tokens', tokenCount(u.input_tokens)],
    ['gen_ai.usage.output_tokens', tokenCount(u.output_tokens)],
    ['relay.usage.total_tokens', tokenCount(u.total_tokens)],
    ['gen_ai.usage.cache_read.input_tokens', tokenCount(u.input_token_details?.cached_tokens)],
  ];
  for (const [name, count] of pairs) if (count !== undefined) attributes[name] = count;
  return attributes;
}

/** End reasons that mean the session failed (the others are a side closing, or a cancel by policy). */
function failed(endReason: string): boolean {
  return endReason.startsWith('error:') || endReason.startsWith('dial_failed:') || endReason === 'connect_timeout';
}

function markError(span: Span, code: string): void {
  span.setAttribute('error.type', code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: code });
}

/** A response's span and whether its `response.created` has been seen. */
interface OpenResponse {
  span: Span;
  created: boolean;
}

/** One session's trace while it lives. */
interface SessionTrace {
  root: Span;
  /** When the root began, in epoch milliseconds on the SDK's clock. */
  startedAt: number;
  context: Context;
  dialAttempts: number;
  /** When the last dial attempt ended (the root's start before the first). */
  lastDialEnd: number;
  /** Responses asked for or started, oldest first; each `response.done` ends the oldest started one. */
  responses: OpenResponse[];
}

class SessionTracer {
  private readonly sessions = new Map<LiveLink, SessionTrace>();

  constructor(private readonly tracer: Tracer) {}

  started(link: LiveLink): void {
    const startedAt = now();
    const root = this.tracer.startSpan(
      'realtime.session',
      {
        kind: SpanKind.SERVER,
        startTime: startedAt,
        attributes: {
          'relay.session.id': link.sessionId,
          'relay.key.id': link.caller.keyId,
          'relay.key.name': link.caller.keyName,
          'gen_ai.request.model': link.model,
          'relay.transport': link.transport,
        },
      },
      ROOT_CONTEXT,
    );
    this.sessions.set(link, { root, startedAt, context: trace.setSpan(ROOT_CONTEXT, root), dialAttempts: 0, lastDialEnd: startedAt, responses: [] });
  }

  /**
   * A child of the session's root that took `ms` and has just ended. `ms` is
   * rounded: the span never begins before `notBefore` (the root's start, or
   * the end of the previous dial attempt, since attempts follow each other).
   */
  private finishedChild(session: SessionTrace, name: string, kind: SpanKind, ms: number, attributes: Attributes, notBefore = session.startedAt): { span: Span; endTime: number } {
    const endTime = now();
    const span = this.tracer.startSpan(name, { kind, startTime: Math.min(endTime, Math.max(notBefore, endTime - ms)), attributes }, session.context);
    return { span, endTime };
  }

  private dialSpan(session: SessionTrace, upstream: string, ms: number): Span {
    const { span, endTime } = this.finishedChild(session, 'upstream.dial', SpanKind.CLIENT, ms, { 'relay.upstream': upstream, 'relay.dial.attempt': ++session.dialAttempts }, session.lastDialEnd);
    session.lastDialEnd = endTime;
    return span;
  }

  dialed(link: LiveLink, upstream: string, ms: number): void {
    const session = this.sessions.get(link);
    if (!session) return;
    const span = this.dialSpan(session, upstream, ms);
    span.setStatus({ code: SpanStatusCode.OK });
    span.end(session.lastDialEnd);
  }

  dialFailed(link: LiveLink, upstream: string, error: RelayError, ms: number): void {
    const session = this.sessions.get(link);
    if (!session) return;
    const span = this.dialSpan(session, upstream, ms);
    // The code only: an upstream's message may quote what it was sent.
    markError(span, error.code);
    span.end(session.lastDialEnd);
  }

  responseRequested(link: LiveLink): void {
    const session = this.sessions.get(link);
    if (!session) return;
    const span = this.tracer.startSpan('realtime.response', { kind: SpanKind.INTERNAL, startTime: now(), attributes: { 'relay.response.origin': 'client' } }, session.context);
    session.responses.push({ span, created: false });
  }

  responseStarted(link: LiveLink): void {
    const session = this.sessions.get(link);
    if (!session) return;
    const requested = session.responses.find((response) => !response.created);
    if (requested) {
      requested.created = true;
      requested.span.addEvent('response.created', now());
      return;
    }
    // Started by the upstream itself (server VAD): nothing asked for it.
    const startTime = now();
    const span = this.tracer.startSpan('realtime.response', { kind: SpanKind.INTERNAL, startTime, attributes: { 'relay.response.origin': 'upstream' } }, session.context);
    span.addEvent('response.created', startTime);
    session.responses.push({ span, created: true });
  }

  responseDone(link: LiveLink, response: ResponseDone, charge: { costNano: bigint } | { error: RelayError }): void {
    const session = this.sessions.get(link);
    if (!session) return;
    const index = session.responses.findIndex((open) => open.created);
    const open = index === -1 ? undefined : session.responses.splice(index, 1)[0];
    const span = open?.span ?? this.tracer.startSpan('realtime.response', { kind: SpanKind.INTERNAL, startTime: now() }, session.context);
    span.setAttributes({ 'relay.response.id': response.id, 'relay.response.status': response.status, ...usageAttributes(response.usage) });
    if ('error' in charge) markError(span, charge.error.code);
    else {
      span.setAttributes(costAttributes(charge.costNano));
      if (response.status === 'failed') markError(span, 'response_failed');
    }
    span.end(now());
  }

  settled(link: LiveLink, ms: number): void {
    const session = this.sessions.get(link);
    if (!session) return;
    const { span, endTime } = this.finishedChild(session, 'ledger.settle', SpanKind.CLIENT, ms, {});
    span.end(endTime);
  }

  ended(link: LiveLink, summary: SessionSummary): void {
    const session = this.sessions.get(link);
    if (!session) return;
    this.sessions.delete(link);
    // Asked for, never done (refused upstream, or the session ended first).
    for (const open of session.responses) {
      open.span.setAttribute('relay.response.status', 'unfinished');
      open.span.end(now());
    }
    const stats = link.stats;
    const root = session.root;
    root.setAttributes({
      'relay.end_reason': summary.endReason,
      'relay.frames.in': stats.framesIn,
      'relay.frames.out': stats.framesOut,
      'relay.bytes.in': stats.bytesIn,
      'relay.bytes.out': stats.bytesOut,
      'relay.responses': summary.usage.filter((record) => record.kind === 'response').length,
      ...costAttributes(link.spendNano),
    });
    // No upstream answered: neither is known.
    if (summary.servedModel !== null) root.setAttribute('gen_ai.response.model', summary.servedModel);
    if (summary.upstream !== null) root.setAttribute('relay.upstream', summary.upstream);
    if (summary.drain) root.setAttribute('relay.drain', summary.drain);
    if (summary.clientCloseCode !== null) root.setAttribute('relay.client.close_code', summary.clientCloseCode);
    if (summary.upstreamCloseCode !== null) root.setAttribute('relay.upstream.close_code', summary.upstreamCloseCode);
    if (failed(summary.endReason)) markError(root, summary.endReason.slice(summary.endReason.indexOf(':') + 1));
    root.end(now());
  }

  /** At shutdown: whatever is still open is ended as it stands. */
  endAll(): void {
    for (const [link, session] of this.sessions) {
      for (const open of session.responses) open.span.end(now());
      session.root.setAttribute('relay.end_reason', 'unfinished_at_shutdown');
      session.root.end(now());
      this.sessions.delete(link);
    }
  }
}

/** A failed export arrives as the error flattened to JSON, stack and all: its message is enough. */
function reasonOf(message: unknown): string {
  const text = String(message);
  try {
    const error = JSON.parse(text) as { message?: unknown };
    if (typeof error.message === 'string') return error.message.slice(0, 200);
  } catch {
    // Not JSON: a message of the SDK's own.
  }
  return text.slice(0, 200);
}

/**
 * The SDK reports failed exports (and dropped spans) through its diagnostic
 * logger, silent by default. They become one warning at most every half
 * minute, cut short: a collector down must not flood the log, and its
 * answers are not the relay's to keep.
 */
function exportProblemLog(log: Logger): DiagLogger {
  const warnSometimes = warnAtMostEveryHalfMinute(log);
  const warn = (message: string) => warnSometimes({ reason: reasonOf(message) }, 'spans could not be exported to the trace collector; sessions are not affected');
  const ignore = () => undefined;
  return { error: warn, warn, info: ignore, debug: ignore, verbose: ignore };
}

export function createTracing(settings: TraceSettings, identity: { instanceId: string }, log: Logger): Tracing {
  // The variables win over the relay's defaults: OTEL_SERVICE_NAME, then OTEL_RESOURCE_ATTRIBUTES.
  const resource = defaultResource()
    .merge(resourceFromAttributes({ 'service.name': DEFAULT_SERVICE_NAME, 'service.instance.id': identity.instanceId }))
    .merge(detectResources({ detectors: [envDetector] }));
  diag.setLogger(exportProblemLog(log), DiagLogLevel.WARN);
  const processor = new BatchSpanProcessor({ exporter: new OTLPTraceExporter(), ...settings.batch });
  const provider = new TracerProvider({ resource, sampler: samplerFor(settings), spanProcessors: [processor] });
  const sessions = new SessionTracer(provider.getTracer('realtime-relay'));
  const observer: Required<Pick<SessionObserver, 'dialed' | 'dialFailed' | 'responseRequested' | 'responseStarted' | 'responseDone' | 'settled' | 'ended'>> = {
    dialed: (link, upstream, ms) => sessions.dialed(link, upstream, ms),
    dialFailed: (link, upstream, error, ms) => sessions.dialFailed(link, upstream, error, ms),
    responseRequested: (link) => sessions.responseRequested(link),
    responseStarted: (link) => sessions.responseStarted(link),
    responseDone: (link, response, charge) => sessions.responseDone(link, response, charge),
    settled: (link, ms) => sessions.settled(link, ms),
    ended: (link, summary) => sessions.ended(link, summary),
  };
  return {
    observer,
    sessionStarted(link) {
      try {
        sessions.started(link);
      } catch (error) {
        log.warn({ err: error }, 'a session trace could not be started');
      }
    },
    async shutdown() {
      sessions.endAll();
      await provider.shutdown().catch(() => log.warn('the last spans could not be exported to the trace collector'));
      diag.disable();
    },
  };
}
