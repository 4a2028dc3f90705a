import { RelayError, asRelayError } from '../errors.js';
import { dialOnce, isFailoverable, type DialRequest, type DialedUpstream, type Upstream } from './upstream.js';

export interface FailoverReport {
  dialed?(upstream: string, ms: number): void;
  dialFailed?(upstream: string, error: RelayError, ms: number): void;
}

/**
 * Dials the upstreams serving a model in order, moving to the next when one
 * fails before its first frame. Every attempt fits in the one connect
 * deadline: each gets an equal share of the time left, the last one all of
 * it (the session machine's connect timer enforces that end). Each attempt's
 * timer is owned here and cleared when the attempt settles.
 */
export async function dialWithFailover(
  candidates: Upstream[],
  request: DialRequest,
  connectTimeoutMs: number,
  signal: AbortSignal,
  report: FailoverReport = {},
): Promise<DialedUpstream> {
  if (candidates.length === 0) throw new RelayError('model_not_found', `No upstream serves the model "${request.model}".`);
  const deadline = Date.now() + connectTimeoutMs;
  // Made only when an attempt fails: an error's stack costs more than the rest of a dial's bookkeeping.
  let lastError: RelayError | null = null;
  for (let i = 0; i < candidates.length; i++) {
    if (signal.aborted) throw new RelayError('upstream_timeout');
    const upstream = candidates[i]!;
    const last = i === candidates.length - 1;
    const share = Math.max(1, Math.floor((deadline - Date.now()) / (candidates.length - i)));
    // The last attempt (the only one, mostly) runs on the session's own signal: no timer, no controller.
    const attemptTimeout = last ? null : new AbortController();
    const attemptTimer = attemptTimeout ? setTimeout(() => attemptTimeout.abort(), share) : undefined;
    const attempt = attemptTimeout ? AbortSignal.any([signal, attemptTimeout.signal]) : signal;
    const began = Date.now();
    try {
      const dialed = await dialOnce(upstream, request, attempt);
      if (signal.aborted) {
        dialed.socket.terminate();
        throw new RelayError('upstream_timeout');
      }
      report.dialed?.(upstream.name, Date.now() - began);
      return dialed;
    } catch (error) {
      lastError = asRelayError(error, 'upstream_error');
      // Once the session itself is cancelled, a failed attempt is not the upstream's fault.
      if (signal.aborted) throw lastError;
      report.dialFailed?.(upstream.name, lastError, Date.now() - began);
      if (!isFailoverable(lastError)) throw lastError;
    } finally {
      clearTimeout(attemptTimer);
    }
  }
  throw lastError ?? new RelayError('upstream_unavailable');
}
