import { asRelayError } from '../errors.js';
import type { SessionMeter } from './ports.js';
import type { LiveLink } from './live-link.js';
import type { SessionObserver } from './session-link.js';

/**
 * The session's meter, telling `observer` of each response and of the
 * settlement as billing sees them: a response is admitted, starts, is charged.
 * These are per response, never per frame. Without an observer of responses
 * the meter is used as it is, and nothing is added.
 */
export function observedMeter(meter: SessionMeter, link: LiveLink, observer: SessionObserver | undefined): SessionMeter {
  if (!observer?.responseRequested && !observer?.responseStarted && !observer?.responseDone && !observer?.settled) return meter;
  return {
    opened: (info) => meter.opened(info),
    callAnswered: (call) => meter.callAnswered(call),
    configured: (session) => meter.configured(session),
    admitResponse() {
      const admitted = meter.admitResponse();
      // A synchronous answer stays synchronous: the bill forwards the frame at once then.
      if (admitted === undefined) {
        observer.responseRequested?.(link);
        return undefined;
      }
      return admitted.then(() => observer.responseRequested?.(link));
    },
    responseStarted() {
      // It has started upstream whatever billing says of it.
      observer.responseStarted?.(link);
      return meter.responseStarted();
    },
    chargeResponse(response) {
      return meter.chargeResponse(response).then(
        (verdict) => {
          observer.responseDone?.(link, response, { costNano: verdict.costNano });
          return verdict;
        },
        (error: unknown) => {
          observer.responseDone?.(link, response, { error: asRelayError(error, 'billing_unavailable') });
          throw error;
        },
      );
    },
    chargeTranscription: (event) => meter.chargeTranscription(event),
    spendNano: () => meter.spendNano(),
    settle(summary) {
      const began = performance.now();
      return meter.settle(summary).finally(() => observer.settled?.(link, performance.now() - began));
    },
  };
}
