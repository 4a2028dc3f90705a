import { Webhook } from 'standardwebhooks';
import { pruneInBatches, type Ledger, type UsageEvent } from '../billing/ledger/index.js';
import { signedWebhookHeaders } from '../protocol/standard-webhooks.js';
import { CLOUD_EVENT_CONTENT_TYPE, toCloudEvent, USAGE_EVENT_SOURCE } from './cloud-event.js';

/**
 * Sends the ledger's outbox of usage events to one webhook, at least once.
 *
 * Sessions never wait for it: the ledger writes an event in the transaction
 * of its charge or settlement, and this loop, on its own timers, claims due
 * events, POSTs each one signed the Standard Webhooks way, and reports back.
 * A 2xx marks the event delivered; anything else (an error status, a refused
 * connection, a timeout) schedules it again after an exponential backoff
 * with jitter, so that many relays do not retry a recovering receiver in
 * step. Because the outbox is in the ledger, a restart resumes where the
 * last process stopped: an event claimed by a process that died is due again
 * when its lease runs out. That is also where a duplicate can come from (the
 * receiver took it, the acknowledgement was lost): it carries the same id.
 *
 * The same timer deletes delivered events once they are older than the
 * retention, so the outbox does not grow with the ledger: a bounded batch
 * per statement (each lock stays short), a few batches per pass, a pass at
 * most every `everyMs`. An event not delivered yet is never deleted.
 */

export interface UsageDeliveryHooks {
  delivered?(event: UsageEvent): void;
  /** One attempt failed; the event is tried again in `retryInMs`. */
  failed?(event: UsageEvent, reason: string, retryInMs: number): void;
  /** The outbox could not be read (the ledger is down); the loop tries again after its poll interval. */
  claimFailed?(error: unknown): void;
  /** Delivered events older than the retention were deleted. */
  pruned?(count: number): void;
  /** Deleting delivered events failed; the next pass tries again. */
  pruneFailed?(error: unknown): void;
}

/** How long delivered events stay in the outbox. */
export interface UsageEventRetention {
  /** Age, counted from delivery, after which a delivered event is deleted. */
  keepMs: number;
  /** Most events one statement deletes. Default 500. */
  batchSize?: number;
  /** Least time between two passes. Default 60 s. */
  everyMs?: number;
}

export interface UsageDeliveryOptions {
  ledger: Pick<Ledger, 'claimUsageEvents' | 'usageEventDelivered' | 'usageEventFailed' | 'pruneUsageEvents'>;
  /** The receiver's endpoint. */
  url: string;
  /** The Standard Webhooks signing secret, `whsec_` and base64. */
  secret: string;
  /** How often the outbox is looked at when it was empty last time. */
  pollMs: number;
  /** The first retry's delay; each further failure doubles it, up to maxRetryMs. */
  retryMs: number;
  maxRetryMs: number;
  /** How long one POST may take. */
  timeoutMs: number;
  /** Most events claimed, and sent at once, per round. Default 32. */
  batchSize?: number;
  source?: string;
  /** Without it delivered events are kept. */
  retention?: UsageEventRetention;
  hooks?: UsageDeliveryHooks;
  /** For tests: [0, 1). */
  random?: () => number;
}

export interface UsageDelivery {
  /** Stops claiming and waits for the round in flight; unsent events stay in the outbox. */
  stop(): Promise<void>;
}

const DEFAULT_BATCH_SIZE = 32;
const DEFAULT_PRUNE_BATCH_SIZE = 500;
const DEFAULT_PRUNE_EVERY_MS = 60_000;
/** Batches per pass: a large backlog (a first start after an upgrade) is worked off over several passes. */
const PRUNE_BATCHES_PER_PASS = 20;

/**
 * The delay before the next attempt: base × 2^(attempts − 1), at most max,
 * then a random point in its upper half ("equal jitter"): never sooner than
 * half the backoff, never in step with another instance.
 */
export function retryDelayMs(attempts: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const backoff = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempts - 1, 0), 30));
  return Math.round(backoff / 2 + (backoff / 2) * random());
}

export function startUsageDelivery(options: UsageDeliveryOptions): UsageDelivery {
  const webhook = new Webhook(options.secret);
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  // A claimed event is ours until every POST of its round has had its time; a process that dies holding it frees it then.
  const leaseMs = options.timeoutMs * 2 + 5_000;
  const source = options.source ?? USAGE_EVENT_SOURCE;
  const random = options.random ?? Math.random;
  const hooks = options.hooks ?? {};
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> | undefined;
  let nextPruneAt = 0;

  async function send(event: UsageEvent): Promise<void> {
    let reason: string;
    try {
      const body = JSON.stringify(toCloudEvent(event, source));
      const response = await fetch(options.url, {
        method: 'POST',
        headers: { 'content-type': CLOUD_EVENT_CONTENT_TYPE, ...signedWebhookHeaders(webhook, event.id, body) },
        body,
        // A redirect could take the signed usage elsewhere: it counts as a failure.
        redirect: 'manual',
        signal: AbortSignal.timeout(options.timeoutMs),
      });
      // The answer's body is not needed; reading it frees the connection.
      await response.arrayBuffer().catch(() => undefined);
      if (response.status >= 200 && response.status < 300) {
        hooks.delivered?.(event);
        // Unrecorded (the ledger is down), the lease runs out and the receiver gets it again under the same id.
        await options.ledger.usageEventDelivered(event.id).catch(() => undefined);
        return;
      }
      reason = `the receiver answered ${response.status}`;
    } catch (error) {
      reason = describe(error);
    }
    const retryInMs = retryDelayMs(event.attempts, options.retryMs, options.maxRetryMs, random);
    hooks.failed?.(event, reason, retryInMs);
    // If this too fails, the lease runs out and the event is due again anyway.
    await options.ledger.usageEventFailed(event.id, retryInMs, reason).catch(() => undefined);
  }

  /** One round: how many events it claimed. */
  async function round(): Promise<number> {
    const events = await options.ledger.claimUsageEvents({ limit: batchSize, leaseMs });
    await Promise.all(events.map(send));
    return events.length;
  }

  /** Deletes delivered events past the retention, if a pass is due. */
  async function prune(): Promise<void> {
    const retention = options.retention;
    if (retention === undefined || Date.now() < nextPruneAt) return;
    nextPruneAt = Date.now() + (retention.everyMs ?? DEFAULT_PRUNE_EVERY_MS);
    try {
      const deleted = await pruneInBatches(
        (limit) => options.ledger.pruneUsageEvents({ before: new Date(Date.now() - retention.keepMs), limit }),
        retention.batchSize ?? DEFAULT_PRUNE_BATCH_SIZE,
        PRUNE_BATCHES_PER_PASS,
      );
      if (deleted > 0) hooks.pruned?.(deleted);
    } catch (error) {
      hooks.pruneFailed?.(error);
    }
  }

  function schedule(delayMs: number): void {
    if (stopped) return;
    timer = setTimeout(function usageDeliveryTick() {
      inFlight = round().then(
        // A full batch means more may be due: go again at once.
        (claimed) => (claimed === batchSize ? 0 : options.pollMs),
        (error: unknown) => {
          hooks.claimFailed?.(error);
          return options.pollMs;
        },
      ).then(async (next) => {
        await prune();
        inFlight = undefined;
        schedule(next);
      });
    }, delayMs);
    // The loop alone must not keep a process alive that has nothing else to do.
    timer.unref();
  }

  schedule(0);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await inFlight;
    },
  };
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === 'TimeoutError') return 'the receiver did not answer in time';
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  return code ? `${error.message} (${code})` : error.message;
}
