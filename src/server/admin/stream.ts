import type { Context } from 'hono';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import type { SessionRegistry } from '../registry.js';
import { sessionView } from './session-view.js';

/** How often the byte counters and ages are refreshed while nothing else changes. */
export const STREAM_REFRESH_MS = 1_000;

/**
 * Server-sent events: `event: sessions`, whose data is
 * `{"at": ISO time, "sessions": [SessionView…]}`, the whole live list. One is
 * sent at once, then on every lifecycle change (coalesced within a tick) and
 * every STREAM_REFRESH_MS for the counters. The stream owns one registry
 * listener, one interval and at most one pending immediate, and releases all
 * three when the client goes away.
 */
export function sessionStream(c: Context, registry: SessionRegistry, refreshMs = STREAM_REFRESH_MS): Response {
  c.header('X-Accel-Buffering', 'no');
  return streamSSE(c, async function streamSessions(stream: SSEStreamingApi) {
    let writing = false;
    let stale = false;
    // A client that reads slowly gets fewer, fresher lists instead of a queue of old ones.
    const push = async (): Promise<void> => {
      if (writing) {
        stale = true;
        return;
      }
      writing = true;
      try {
        do {
          stale = false;
          const now = Date.now();
          const data = JSON.stringify({ at: new Date(now).toISOString(), sessions: registry.list().map((live) => sessionView(live, now)) });
          await stream.writeSSE({ event: 'sessions', data });
        } while (stale && !stream.aborted);
      } finally {
        writing = false;
      }
    };
    let pending: NodeJS.Immediate | undefined;
    const registryOnChanged = () => {
      pending ??= setImmediate(() => {
        pending = undefined;
        void push();
      });
    };
    const refresh = setInterval(() => void push(), refreshMs);
    registry.on('changed', registryOnChanged);
    try {
      const aborted = new Promise<void>((resolve) => stream.onAbort(resolve));
      await push();
      if (!stream.aborted) await aborted;
    } finally {
      clearInterval(refresh);
      if (pending !== undefined) clearImmediate(pending);
      registry.off('changed', registryOnChanged);
    }
  });
}
