/**
 * One simulated Realtime session, whatever carries it (a WebSocket, or a
 * WebRTC call's data channel and sideband sockets): answers client events as
 * OpenAI's GA API does, streams responses on its own timer and strikes
 * faults. It owns that timer and clears it in dispose().
 */
import type { SessionType } from './handshake.js';
import { FUNCTION_CALL_STEPS, SimulatedResponse } from './response.js';
import type { ResponseKind } from './response.js';
import {
  GA_SESSION_KEYS,
  errorBody,
  initialSession,
  isObject,
  mergeSession,
  outputAudioSettings,
  transcriptionModel,
} from './shapes.js';
import type { Json } from './shapes.js';
import type { SessionFault, SimulatorTap, TimedSessionFault } from './types.js';
import { SIMULATED_TRANSCRIPT, simulatedTranscriptionUsage } from './usage.js';

export interface SessionSettings {
  /** Distinguishes this session's ids from the other sessions of the same simulator. */
  number: number;
  audioChunkBytes: number;
  chunkIntervalMs: number;
  textDeltas: number;
  audioChunks: number;
  /** Response ids are unique across the simulator, since a ledger may key on them. */
  nextResponseId: () => string;
  tap?: SimulatorTap;
}

/** Where a session's server events go, and what its transport faults do. */
export interface SessionSink {
  /** Whether a frame sent now could still be delivered. */
  readonly isOpen: boolean;
  send(frame: string): void;
  /** Ends the transport with a close code (a call ends as a whole). */
  close(code: number, reason: string): void;
  /** Ends the transport without a goodbye. */
  drop(): void;
  /** Stops (and resumes) reading the client, where the transport can. */
  pauseReading(): void;
  resumeReading(): void;
}

/** What a session is opened as. */
export interface SessionOpening {
  sessionType: SessionType;
  /** The model, or the Azure deployment; null for a transcription session without one. */
  model: string | null;
  /** OpenAI upgrades a request without a model, then reports `missing_model` and closes 4000. */
  missingModel: boolean;
  /** The retired beta shape was asked for (header or browser subprotocol). */
  betaRequested: boolean;
}

/** Told when a response starts or stops streaming (a call plays audio meanwhile). */
export type ResponseActivity = (active: boolean) => void;

interface ItemSummary {
  id: string;
  type: string;
  role: string | null;
}

/** The client event types a session answers (OpenAI lists its own in the same error). */
export const SUPPORTED_EVENTS = [
  'session.update',
  'input_audio_buffer.append',
  'input_audio_buffer.commit',
  'input_audio_buffer.clear',
  'output_audio_buffer.clear',
  'conversation.item.create',
  'conversation.item.retrieve',
  'conversation.item.truncate',
  'conversation.item.delete',
  'response.create',
  'response.cancel',
];

const FAULT_KINDS = new Set(['garbage', 'drop', 'close', 'session_expired', 'silence', 'slow_reader', 'resume_reading', 'stall_response', 'finish_response', 'delay_response']);

/** Close codes a peer may put on the wire (1005, 1006 and 1015 are reserved for local reporting). */
function isSendableCloseCode(code: number): boolean {
  return (
    (Number.isInteger(code) && code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (Number.isInteger(code) && code >= 3000 && code <= 4999)
  );
}

/** Why `fault` cannot be struck, or null when it can. */
export function faultProblem(fault: unknown): string | null {
  if (!isObject(fault) || typeof fault.kind !== 'string' || !FAULT_KINDS.has(fault.kind)) {
    return `fault.kind must be one of ${[...FAULT_KINDS].join(', ')}`;
  }
  if (fault.when !== undefined && fault.when !== 'open' && fault.when !== 'mid-response') {
    return "fault.when must be 'open' or 'mid-response'";
  }
  if (fault.kind === 'delay_response' && !(typeof fault.ms === 'number' && Number.isInteger(fault.ms) && fault.ms > 0 && fault.ms <= 600_000)) {
    return 'fault.ms must be a whole number of milliseconds from 1 to 600000';
  }
  if (fault.kind === 'close') {
    if (typeof fault.code !== 'number' || !isSendableCloseCode(fault.code)) return 'fault.code must be a close code that may be sent';
    if (fault.reason !== undefined && (typeof fault.reason !== 'string' || Buffer.byteLength(fault.reason) > 123)) {
      return 'fault.reason must be a string of at most 123 bytes';
    }
  }
  return null;
}

export class SimulatedSession {
  private readonly sessionType: SessionType;
  private session: Json;
  private eventSeq = 0;
  private itemSeq = 0;
  private disposed = false;
  /** Sends nothing, pongs included, and ignores the client. */
  private silenced = false;
  private stallNextResponse = false;
  private delayNextResponseMs = 0;
  private delayTimer: NodeJS.Timeout | null = null;
  private readonly midResponseFaults: SessionFault[] = [];
  private response: SimulatedResponse | null = null;
  private stalled = false;
  private streamTimer: { kind: 'timeout'; handle: NodeJS.Timeout } | { kind: 'immediate'; handle: NodeJS.Immediate } | null = null;
  private responsesCreated = 0;
  /** Decoded bytes in the input audio buffer (reset by commit and clear). */
  private bufferBytes = 0;
  /** Decoded bytes appended since the previous response.create: the next response's input audio. */
  private audioBytesSinceResponse = 0;
  private readonly items = new Map<string, ItemSummary>();
  private lastItemId: string | null = null;

  constructor(
    private readonly sink: SessionSink,
    private readonly settings: SessionSettings,
    opening: SessionOpening,
    private readonly responseActivity?: ResponseActivity,
  ) {
    this.sessionType = opening.sessionType;
    this.session = initialSession(opening.sessionType, `sess_${settings.number}`, opening.model);
  }

  /** Whether pings are answered: not once silenced or disposed. */
  get answersPings(): boolean {
    return !this.silenced && !this.disposed;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Applies a session config given at creation (a WebRTC call's `session` field), as session.update would. */
  configure(update: Json): string | null {
    const allowed = GA_SESSION_KEYS[this.sessionType];
    const unknown = Object.keys(update).find((key) => !allowed.has(key));
    if (unknown !== undefined) return `Unknown parameter: 'session.${unknown}'.`;
    this.session = mergeSession(this.session, update);
    return null;
  }

  /** `session.created` for one listener joining late (a call's data channel or a sideband socket). */
  greet(sink: SessionSink): void {
    if (!this.silenced && !this.disposed) this.send('session.created', { session: this.session }, sink);
  }

  /**
   * Opens the session as OpenAI would for this handshake: `session.created`,
   * or an error and a close for a beta or model-less request. `silent` is the
   * handshake fault that completes the upgrade and then says nothing.
   */
  open(handshake: SessionOpening, silent: boolean, fault: TimedSessionFault | undefined): void {
    if (silent) {
      this.silenced = true;
      return;
    }
    if (handshake.betaRequested) {
      this.fatal('beta_api_shape_disabled', 'The Realtime API beta shape is no longer supported for this model. Remove the "OpenAI-Beta: realtime=v1" header and use the GA interface.', 4000);
      return;
    }
    if (handshake.missingModel) {
      this.fatal('missing_model', 'You must provide a model parameter, for example wss://api.openai.com/v1/realtime?model=gpt-realtime', 4000);
      return;
    }
    this.send('session.created', { session: this.session });
    if (fault !== undefined) this.applyFault(fault);
  }

  /** Clears the stream and delay timers; the session then ignores its client. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.clearStreamTimer();
    if (this.delayTimer !== null) clearTimeout(this.delayTimer);
    this.delayTimer = null;
    this.setResponse(null);
  }

  /** One frame from the client, as received. */
  receive(data: Buffer, isBinary: boolean): void {
    if (this.disposed) return;
    this.settings.tap?.received?.(data, isBinary);
    if (this.silenced) return;
    if (isBinary) {
      this.sendError('invalid_event', 'Expected a text WebSocket message; binary frames are not supported.', null, null);
      return;
    }
    let event: unknown;
    try {
      event = JSON.parse(data.toString());
    } catch {
      this.sendError('invalid_json', 'Invalid event: failed to parse JSON value.', null, null);
      return;
    }
    if (!isObject(event)) {
      this.sendError('invalid_json', 'Invalid event: expected a JSON object.', null, null);
      return;
    }
    this.handle(event);
  }

  /** The one place the active response changes, so a listener hears every start and stop. */
  private setResponse(response: SimulatedResponse | null): void {
    const was = this.response !== null;
    this.response = response;
    if (was !== (response !== null)) this.responseActivity?.(response !== null);
  }

  private handle(event: Json): void {
    const clientEventId = typeof event.event_id === 'string' ? event.event_id : null;
    const type = event.type;
    if (typeof type !== 'string') {
      this.sendError('missing_required_parameter', "Missing required parameter: 'type'.", 'type', clientEventId);
      return;
    }
    switch (type) {
      case 'session.update':
        return this.updateSession(event, clientEventId);
      case 'input_audio_buffer.append':
        return this.appendAudio(event, clientEventId);
      case 'input_audio_buffer.commit':
        return this.commitAudio(clientEventId);
      case 'input_audio_buffer.clear':
        this.bufferBytes = 0;
        return this.send('input_audio_buffer.cleared', {});
      case 'output_audio_buffer.clear':
        return this.send('output_audio_buffer.cleared', { response_id: this.response?.id ?? null });
      case 'conversation.item.create':
        return this.createItem(event, clientEventId);
      case 'conversation.item.retrieve':
      case 'conversation.item.truncate':
      case 'conversation.item.delete':
        return this.touchItem(type, event, clientEventId);
      case 'response.create':
        if (this.delayNextResponseMs > 0) {
          const ms = this.delayNextResponseMs;
          this.delayNextResponseMs = 0;
          this.delayTimer = setTimeout(() => {
            this.delayTimer = null;
            if (!this.disposed && !this.silenced) this.createResponse(event, clientEventId);
          }, ms);
          return;
        }
        return this.createResponse(event, clientEventId);
      case 'response.cancel':
        return this.cancelResponse(clientEventId);
      case 'simulator.fault':
        return this.faultInBand(event, clientEventId);
      case 'simulator.end_of_speech':
        return this.endOfSpeech(clientEventId);
      default:
        this.sendError(
          'invalid_value',
          `Invalid value: '${type}'. Supported values are: ${SUPPORTED_EVENTS.map((t) => `'${t}'`).join(', ')}.`,
          'type',
          clientEventId,
        );
    }
  }

  private updateSession(event: Json, clientEventId: string | null): void {
    const update = event.session;
    if (!isObject(update)) {
      this.sendError('missing_required_parameter', "Missing required parameter: 'session'.", 'session', clientEventId);
      return;
    }
    const allowed = GA_SESSION_KEYS[this.sessionType];
    // The flat beta fields (modalities, voice, input_audio_format...) are unknown to GA.
    const unknown = Object.keys(update).find((key) => !allowed.has(key));
    if (unknown !== undefined) {
      this.sendError('unknown_parameter', `Unknown parameter: 'session.${unknown}'.`, `session.${unknown}`, clientEventId);
      return;
    }
    this.session = mergeSession(this.session, update);
    this.send('session.updated', { session: this.session });
  }

  private appendAudio(event: Json, clientEventId: string | null): void {
    if (typeof event.audio !== 'string') {
      this.sendError('missing_required_parameter', "Missing required parameter: 'audio'.", 'audio', clientEventId);
      return;
    }
    // Counted from the base64 length: the audio itself is never decoded.
    const bytes = Buffer.byteLength(event.audio, 'base64');
    this.bufferBytes += bytes;
    this.audioBytesSinceResponse += bytes;
  }

  /**
   * Stands in for server VAD hearing the speaker stop (the simulator cannot
   * hear): the buffer is committed and, when turn detection creates
   * responses, a response starts that no client asked for, as OpenAI's does.
   */
  private endOfSpeech(clientEventId: string | null): void {
    const detection = (this.session.audio as { input?: { turn_detection?: Json | null } } | undefined)?.input?.turn_detection;
    if (!isObject(detection)) {
      this.sendError('invalid_value', 'simulator.end_of_speech needs turn detection on.', 'session.audio.input.turn_detection', clientEventId);
      return;
    }
    this.send('input_audio_buffer.speech_stopped', { audio_end_ms: 0, item_id: `item_vad_${this.itemSeq + 1}` });
    if (this.bufferBytes > 0) this.commitAudio(clientEventId);
    if (detection.create_response !== false && this.response === null) this.createResponse({}, null);
  }

  private commitAudio(clientEventId: string | null): void {
    if (this.bufferBytes === 0) {
      this.sendError(
        'input_audio_buffer_commit_empty',
        'Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has 0.00ms of audio.',
        null,
        clientEventId,
      );
      return;
    }
    const bytes = this.bufferBytes;
    this.bufferBytes = 0;
    const previous = this.lastItemId;
    const item: Json = {
      id: this.nextItemId(),
      object: 'realtime.item',
      type: 'message',
      status: 'completed',
      role: 'user',
      content: [{ type: 'input_audio', transcript: null }],
    };
    this.remember(item);
    this.send('input_audio_buffer.committed', { previous_item_id: previous, item_id: item.id });
    this.send('conversation.item.added', { previous_item_id: previous, item });
    this.send('conversation.item.done', { previous_item_id: previous, item });
    const model = transcriptionModel(this.session);
    if (model === undefined) return;
    const ref = { item_id: item.id, content_index: 0 };
    if (model !== 'whisper-1') this.send('conversation.item.input_audio_transcription.delta', { ...ref, delta: SIMULATED_TRANSCRIPT });
    this.send('conversation.item.input_audio_transcription.completed', {
      ...ref,
      transcript: SIMULATED_TRANSCRIPT,
      usage: simulatedTranscriptionUsage(model, bytes),
    });
  }

  private createItem(event: Json, clientEventId: string | null): void {
    const requested = event.item;
    if (!isObject(requested) || typeof requested.type !== 'string') {
      this.sendError('missing_required_parameter', "Missing required parameter: 'item.type'.", 'item.type', clientEventId);
      return;
    }
    const previous = this.lastItemId;
    const id = typeof requested.id === 'string' && requested.id !== '' ? requested.id : this.nextItemId();
    const item: Json = { ...requested, id, object: 'realtime.item', status: 'completed' };
    this.remember(item);
    this.send('conversation.item.added', { previous_item_id: previous, item });
    this.send('conversation.item.done', { previous_item_id: previous, item });
  }

  private touchItem(type: string, event: Json, clientEventId: string | null): void {
    const itemId = event.item_id;
    const known = typeof itemId === 'string' ? this.items.get(itemId) : undefined;
    if (known === undefined) {
      this.sendError('item_not_found', `Item with item_id not found: ${String(itemId)}`, 'item_id', clientEventId);
      return;
    }
    if (type === 'conversation.item.retrieve') {
      this.send('conversation.item.retrieved', { item: { ...known, object: 'realtime.item', status: 'completed' } });
    } else if (type === 'conversation.item.truncate') {
      this.send('conversation.item.truncated', {
        item_id: known.id,
        content_index: event.content_index ?? 0,
        audio_end_ms: event.audio_end_ms ?? 0,
      });
    } else {
      this.items.delete(known.id);
      if (this.lastItemId === known.id) this.lastItemId = [...this.items.keys()].at(-1) ?? null;
      this.send('conversation.item.deleted', { item_id: known.id });
    }
  }

  private createResponse(event: Json, clientEventId: string | null): void {
    if (this.response !== null) {
      this.sendError(
        'conversation_already_has_active_response',
        `Conversation already has an active response in progress: ${this.response.id}. Wait until the response is finished before creating a new one.`,
        null,
        clientEventId,
      );
      return;
    }
    const spec = isObject(event.response) ? event.response : {};
    const metadata = isObject(spec.metadata) ? spec.metadata : null;
    let usageOverride: unknown;
    if (metadata !== null && typeof metadata.sim_usage === 'string') {
      try {
        usageOverride = JSON.parse(metadata.sim_usage);
      } catch {
        this.sendError('invalid_value', 'Invalid value: metadata.sim_usage must be a JSON string.', 'response.metadata.sim_usage', clientEventId);
        return;
      }
    }
    const modalities = Array.isArray(spec.output_modalities) ? spec.output_modalities : this.session.output_modalities;
    const outputModalities = Array.isArray(modalities) ? modalities.map(String) : ['audio'];
    const tools = Array.isArray(spec.tools) ? spec.tools : this.session.tools;
    const toolChoice = spec.tool_choice ?? this.session.tool_choice;
    const firstTool = Array.isArray(tools) && isObject(tools[0]) ? tools[0] : undefined;
    const last = this.lastItemId === null ? undefined : this.items.get(this.lastItemId);
    const callsTool = firstTool !== undefined && toolChoice !== 'none' && last?.type === 'message' && last.role === 'user';
    const kind: ResponseKind = callsTool ? 'function_call' : outputModalities.includes('audio') ? 'audio' : 'text';
    const n = this.settings.number;
    const responseNumber = this.responsesCreated;
    const response = new SimulatedResponse(
      {
        id: this.settings.nextResponseId(),
        conversationId: `conv_${n}`,
        itemId: this.nextItemId(),
        previousItemId: this.lastItemId,
        kind,
        steps: kind === 'function_call' ? FUNCTION_CALL_STEPS : kind === 'audio' ? this.settings.audioChunks : this.settings.textDeltas,
        audioChunkBytes: this.settings.audioChunkBytes,
        outputModalities,
        audio: outputAudioSettings(this.session),
        metadata,
        usageOverride,
        priorResponses: responseNumber,
        inputAudioBytes: this.audioBytesSinceResponse,
        toolName: firstTool !== undefined && typeof firstTool.name === 'string' ? firstTool.name : 'tool',
        callId: `call_${n}_${responseNumber + 1}`,
      },
      (type, fields) => this.send(type, fields),
    );
    this.responsesCreated++;
    this.audioBytesSinceResponse = 0;
    this.setResponse(response);
    this.stalled = this.stallNextResponse;
    this.stallNextResponse = false;
    response.sendCreated();
    if (this.stalled) return;
    response.sendPrelude();
    this.remember({ id: response.itemId, type: kind === 'function_call' ? 'function_call' : 'message', role: 'assistant' });
    this.scheduleStep();
  }

  private resumeStalled(): void {
    const response = this.response;
    if (!this.stalled || response === null) return;
    this.stalled = false;
    if (!response.hasPrelude) {
      response.sendPrelude();
      this.remember({ id: response.itemId, type: response.kind === 'function_call' ? 'function_call' : 'message', role: 'assistant' });
    }
    this.scheduleStep();
  }

  private cancelResponse(clientEventId: string | null): void {
    const response = this.response;
    if (response === null) {
      this.sendError('response_cancel_not_active', 'Cancellation failed: no active response found', null, clientEventId);
      return;
    }
    this.clearStreamTimer();
    this.setResponse(null);
    this.stalled = false;
    response.sendCancelled();
  }

  private scheduleStep(): void {
    if (this.disposed || this.silenced || this.stalled) return;
    this.streamTimer =
      this.settings.chunkIntervalMs === 0
        ? { kind: 'immediate', handle: setImmediate(this.streamOnTick) }
        : { kind: 'timeout', handle: setTimeout(this.streamOnTick, this.settings.chunkIntervalMs) };
  }

  private readonly streamOnTick = (): void => {
    this.streamTimer = null;
    const response = this.response;
    if (response === null || this.disposed || this.silenced) return;
    if (response.remainingSteps > 0) {
      response.sendStep();
      this.strikeMidResponseFaults();
      if (this.response !== response || this.disposed || this.silenced || this.stalled) return;
      if (response.remainingSteps > 0) {
        this.scheduleStep();
        return;
      }
    }
    this.setResponse(null);
    response.sendCompleted();
  };

  private strikeMidResponseFaults(): void {
    while (this.midResponseFaults.length > 0 && !this.disposed) {
      const fault = this.midResponseFaults.shift()!;
      if (fault.kind === 'stall_response') this.stalled = true;
      else this.strike(fault);
    }
  }

  private clearStreamTimer(): void {
    const timer = this.streamTimer;
    if (timer === null) return;
    if (timer.kind === 'timeout') clearTimeout(timer.handle);
    else clearImmediate(timer.handle);
    this.streamTimer = null;
  }

  private faultInBand(event: Json, clientEventId: string | null): void {
    const fault = event.fault;
    const problem = faultProblem(fault);
    if (problem !== null) {
      this.sendError('invalid_value', `Invalid value: ${problem}.`, 'fault', clientEventId);
      return;
    }
    const timed = fault as TimedSessionFault;
    const when = timed.when ?? (event.when === 'mid-response' ? 'mid-response' : 'open');
    this.applyFault({ ...timed, when });
  }

  applyFault(fault: TimedSessionFault): void {
    if (fault.when === 'mid-response') this.midResponseFaults.push(fault);
    else if (fault.kind === 'stall_response') this.stallNextResponse = true;
    else this.strike(fault);
  }

  private strike(fault: SessionFault): void {
    switch (fault.kind) {
      case 'garbage':
        if (!this.silenced && this.sink.isOpen) this.sink.send('simulator: this frame is not JSON');
        return;
      case 'drop':
        this.dispose();
        this.sink.drop();
        return;
      case 'close':
        this.dispose();
        this.sink.close(fault.code, fault.reason ?? '');
        return;
      case 'session_expired':
        this.fatal('session_expired', 'Your session hit the maximum duration of 60 minutes.', 1001);
        return;
      case 'silence':
        this.silenced = true;
        this.clearStreamTimer();
        return;
      case 'slow_reader':
        this.sink.pauseReading();
        return;
      case 'resume_reading':
        this.sink.resumeReading();
        return;
      case 'stall_response':
        this.stallNextResponse = true;
        return;
      case 'delay_response':
        this.delayNextResponseMs = fault.ms;
        return;
      case 'finish_response':
        this.resumeStalled();
        return;
    }
  }

  /** An error event, then a close whose reason names it, in the same tick, as OpenAI does. */
  private fatal(code: string, message: string, closeCode: number): void {
    this.sendError(code, message, null, null);
    this.dispose();
    this.sink.close(closeCode, `invalid_request_error.${code}`);
  }

  private remember(item: Json | ItemSummary): void {
    const id = String(item.id);
    this.items.set(id, { id, type: String(item.type), role: typeof item.role === 'string' ? item.role : null });
    this.lastItemId = id;
  }

  private nextItemId(): string {
    return `item_${this.settings.number}_${++this.itemSeq}`;
  }

  private sendError(code: string | null, message: string, param: string | null, clientEventId: string | null): void {
    this.send('error', { error: errorBody(code, message, param, clientEventId) });
  }

  /** Every server event starts with `type`, then `event_id`, as OpenAI's do. */
  private send(type: string, fields: Json, sink: SessionSink = this.sink): void {
    if (this.silenced || !sink.isOpen) return;
    const event = { type, event_id: `event_${this.settings.number}_${++this.eventSeq}`, ...fields };
    sink.send(this.settings.tap?.serialize ? this.settings.tap.serialize(event) : JSON.stringify(event));
  }
}
