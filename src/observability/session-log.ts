import type { MeterHooks } from '../billing/meter.js';
import { formatUsd } from '../billing/prices.js';
import type { SessionSummary, UsageRecord } from '../server/ports.js';
import type { LiveLink } from '../server/live-link.js';
import type { SessionObserver } from '../server/session-link.js';
import type { Logger } from './logger.js';

export interface SessionLog {
  /** Pass as the relay server's `sessionStarted`. */
  sessionStarted(link: LiveLink): void;
  /** Pass as (part of) the relay server's `observer`. */
  readonly observer: Required<Pick<SessionObserver, 'ended'>>;
  /** Pass in `Billing`'s `hooks`. */
  readonly meterHooks: Pick<MeterHooks, 'anomaly' | 'chargeFailed'>;
}

export interface UsageTotals {
  responses: number;
  transcriptions: number;
  inputTokens: number;
  outputTokens: number;
  /** Transcription billed by duration. */
  audioSeconds: number;
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}

/** What the session used, summed from the usage objects as the upstream sent them. */
export function usageTotals(records: UsageRecord[]): UsageTotals {
  const totals: UsageTotals = { responses: 0, transcriptions: 0, inputTokens: 0, outputTokens: 0, audioSeconds: 0 };
  for (const record of records) {
    if (record.kind === 'response') totals.responses++;
    else totals.transcriptions++;
    const usage = (typeof record.usage === 'object' && record.usage !== null ? record.usage : {}) as Record<string, unknown>;
    totals.inputTokens += count(usage.input_tokens);
    totals.outputTokens += count(usage.output_tokens);
    totals.audioSeconds += count(usage.seconds);
  }
  return totals;
}

/**
 * One line when a session starts and one when it has ended, never one per
 * frame. The end line is the session's record: who, what, where, how long,
 * why it ended, how each side was closed, what it forwarded, used and cost.
 * Neither carries the key (only its name) nor anything of a frame.
 */
export function createSessionLog(log: Logger): SessionLog {
  return {
    sessionStarted(link) {
      log.info({ event: 'session.start', sessionId: link.sessionId, transport: link.transport, keyName: link.caller.keyName, keyId: link.caller.keyId, model: link.model, clientAddress: link.clientAddress }, 'session started');
    },
    observer: {
      ended(link, summary: SessionSummary) {
        // Both sockets are closed: the pipes' counts are final (the summary's were taken at settlement).
        const stats = link.stats;
        log.info(
          {
            event: 'session.end',
            sessionId: summary.sessionId,
            transport: summary.transport,
            keyName: summary.caller.keyName,
            keyId: summary.caller.keyId,
            clientAddress: link.clientAddress,
            model: summary.model,
            servedModel: summary.servedModel,
            upstream: summary.upstream,
            durationMs: Date.now() - summary.startedAt.getTime(),
            endReason: summary.endReason,
            drain: summary.drain,
            clientCloseCode: summary.clientCloseCode,
            upstreamCloseCode: summary.upstreamCloseCode,
            framesIn: stats.framesIn,
            framesOut: stats.framesOut,
            bytesIn: stats.bytesIn,
            bytesOut: stats.bytesOut,
            usage: usageTotals(summary.usage),
            // Integer nano-USD from the meter, written as a decimal string: no float touches it.
            costUsd: formatUsd(link.spendNano),
          },
          'session ended',
        );
      },
    },
    meterHooks: {
      anomaly(sessionId, anomalies, firstInSession) {
        if (firstInSession) log.warn({ sessionId, anomalies }, 'usage broke the protocol invariants; billed by the conservative rule');
      },
      chargeFailed(error) {
        log.error({ err: error }, 'a charge could not be written; the session fails closed');
      },
    },
  };
}
