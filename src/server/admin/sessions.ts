import { Hono } from 'hono';
import type { SessionRegistry } from '../registry.js';
import { AdminError } from './errors.js';
import { sessionId } from './params.js';
import { sessionView } from './session-view.js';
import { sessionStream, STREAM_REFRESH_MS } from './stream.js';

/**
 * /admin/sessions: the live sessions of this process, one of them, its
 * cancellation, and a stream of the list as it changes.
 */
export function sessionRoutes(registry: SessionRegistry, refreshMs = STREAM_REFRESH_MS): Hono {
  const sessions = new Hono();

  sessions.get('/', (c) => {
    const now = Date.now();
    return c.json({ object: 'list', data: registry.list().map((live) => sessionView(live, now)) });
  });

  sessions.get('/stream', (c) => sessionStream(c, registry, refreshMs));

  sessions.get('/:id', (c) => {
    const id = sessionId(c);
    const live = registry.get(id);
    if (!live) throw new AdminError('session_not_found', `No live session has the id "${id}" (it may have ended).`, 'id');
    return c.json(sessionView(live));
  });

  /**
   * CANCEL {reason: 'operator'}: the response in flight is cancelled upstream
   * and its tail billed, then the client gets an `error` event with code
   * `session_cancelled` and close 1000. Answers 202: closing goes on after it.
   */
  sessions.post('/:id/cancel', (c) => {
    const id = sessionId(c);
    const live = registry.get(id);
    if (!live) throw new AdminError('session_not_found', `No live session has the id "${id}" (it may have ended).`, 'id');
    const state = String(live.actor.getSnapshot().value);
    if (state === 'draining' || state === 'closed' || !registry.cancel(id, 'operator')) {
      throw new AdminError('session_closing', `The session is already closing (state "${state}").`, 'id');
    }
    return c.json(sessionView(live), 202);
  });

  return sessions;
}
