import type { PhoneRoute } from '../ports.js';
import { calledNumber, headerValue, type SipHeader } from './headers.js';

/**
 * The route an incoming call takes: a route for its called number first,
 * else the first route (oldest first) whose header has exactly its value.
 * Only equality is compared: a caller's header can never widen a match.
 */
export function routeFor(routes: PhoneRoute[], headers: SipHeader[]): PhoneRoute | undefined {
  const number = calledNumber(headers);
  if (number !== undefined) {
    const byNumber = routes.find((route) => route.match.kind === 'number' && route.match.number === number);
    if (byNumber) return byNumber;
  }
  return routes.find((route) => route.match.kind === 'header' && headerValue(headers, route.match.name) === route.match.value);
}
