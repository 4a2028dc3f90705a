/** An upstream that speaks OpenAI's GA Realtime protocol, deterministically, with faults on demand. */
export { startSimulator } from './server.js';
export { simulatedUsage, simulatedTranscriptionUsage, SIMULATED_TRANSCRIPT } from './usage.js';
export type { RealtimeUsage, TranscriptionUsage, UsageInputs } from './usage.js';
export { FUNCTION_CALL_ARGUMENTS } from './response.js';
export { SUPPORTED_EVENTS } from './session.js';
export type {
  CallEnding,
  FaultSpec,
  FaultTiming,
  HandshakeFault,
  HandshakeRecord,
  IncomingCallOptions,
  PlacedCall,
  SipCallState,
  SessionFault,
  Simulator,
  SimulatorOptions,
  SimulatorTap,
  SipHeader,
  TimedSessionFault,
  WebhookDelivery,
} from './types.js';
