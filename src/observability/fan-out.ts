import type { MeterHooks } from '../billing/meter.js';
import type { SessionObserver } from '../server/session-link.js';

type Hooks = Record<string, ((...args: never[]) => void) | undefined>;

/** One hook object that calls each of `parts` in turn; a throwing part does not stop the others. */
function fanOut<T extends object>(parts: Array<Partial<T>>, names: Array<keyof T>): T {
  const out: Hooks = {};
  for (const name of names) {
    const calls = parts.map((part) => (part as Hooks)[name as string]).filter((call) => call !== undefined);
    if (calls.length === 0) continue;
    out[name as string] = (...args: never[]) => {
      for (const call of calls) {
        try {
          call(...args);
        } catch {
          // Logs and metrics must never break a session.
        }
      }
    };
  }
  return out as T;
}

const OBSERVER_HOOKS: Array<keyof SessionObserver> = ['dialed', 'dialFailed', 'backpressure', 'ended', 'responseRequested', 'responseStarted', 'responseDone', 'settled'];
const METER_HOOKS: Array<keyof MeterHooks> = ['anomaly', 'charged', 'chargeFailed'];

export function combineObservers(...observers: SessionObserver[]): SessionObserver {
  return fanOut<SessionObserver>(observers, OBSERVER_HOOKS);
}

export function combineMeterHooks(...hooks: Array<Partial<MeterHooks>>): Partial<MeterHooks> {
  return fanOut<MeterHooks>(hooks, METER_HOOKS);
}
