import type { InspectionEvent } from 'xstate';
import type { Settings } from '../../src/config/settings.js';
import type { SimulatorOptions } from '../../src/simulator/index.js';
import { startTestRelay, type RecordingTestRelay } from './relay.js';

/**
 * The option names test/model was written against, on startTestRelay with
 * recording billing. Only test/model still calls it; new tests call
 * startTestRelay({ billing: 'recording', … }) directly.
 */
export type Stack = RecordingTestRelay;

export interface StackOptions {
  timings?: Partial<Settings>;
  simulator?: SimulatorOptions;
  maxPayloadBytes?: number;
  inspect?: (event: InspectionEvent) => void;
}

export function startStack(options: StackOptions = {}): Promise<Stack> {
  return startTestRelay({
    billing: 'recording',
    simulator: options.simulator,
    settings: { ...options.timings, ...(options.maxPayloadBytes === undefined ? {} : { maxPayloadBytes: options.maxPayloadBytes }) },
    server: options.inspect ? { inspect: options.inspect } : {},
  });
}
