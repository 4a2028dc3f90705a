/**
 * One model response, as the GA event sequence OpenAI streams for it. The
 * session decides when each step goes out; this module only knows what each
 * step says and what the response cost so far.
 */
import { audioPayload, word } from './shapes.js';
import type { Json } from './shapes.js';
import { simulatedUsage } from './usage.js';

export type ResponseKind = 'text' | 'audio' | 'function_call';

export interface ResponsePlan {
  id: string;
  conversationId: string;
  itemId: string;
  /** The conversation item the output item follows. */
  previousItemId: string | null;
  kind: ResponseKind;
  /** Deltas to stream: text deltas, audio deltas (each followed by a transcript delta) or argument deltas. */
  steps: number;
  audioChunkBytes: number;
  outputModalities: string[];
  audio: Json;
  metadata: Json | null;
  /** Reported verbatim instead of the simulated usage (from `metadata.sim_usage`). */
  usageOverride: unknown;
  priorResponses: number;
  inputAudioBytes: number;
  toolName: string;
  callId: string;
}

export type Emit = (type: string, fields: Json) => void;

/** The arguments of every simulated function call, streamed in two pieces. */
export const FUNCTION_CALL_ARGUMENTS = '{"ok":true}';
const ARGUMENT_PIECES = ['{"ok":', 'true}'];
export const FUNCTION_CALL_STEPS = ARGUMENT_PIECES.length;

export class SimulatedResponse {
  private sentSteps = 0;
  private preludeSent = false;
  private text = '';

  constructor(
    private readonly plan: ResponsePlan,
    private readonly emit: Emit,
  ) {}

  get id(): string {
    return this.plan.id;
  }

  get itemId(): string {
    return this.plan.itemId;
  }

  get remainingSteps(): number {
    return this.plan.steps - this.sentSteps;
  }

  sendCreated(): void {
    this.emit('response.created', { response: this.responseObject('in_progress', null, [], null) });
  }

  /** The output item and its content part, announced before the first delta. */
  get kind(): ResponseKind {
    return this.plan.kind;
  }

  get hasPrelude(): boolean {
    return this.preludeSent;
  }

  sendPrelude(): void {
    this.preludeSent = true;
    const { plan } = this;
    const item = this.item('in_progress');
    this.emit('response.output_item.added', { response_id: plan.id, output_index: 0, item });
    this.emit('conversation.item.added', { previous_item_id: this.plan.previousItemId, item });
    if (plan.kind !== 'function_call') {
      const part = plan.kind === 'audio' ? { type: 'audio', transcript: '' } : { type: 'text', text: '' };
      this.emit('response.content_part.added', { ...this.contentRef(), part });
    }
  }

  sendStep(): void {
    const { plan } = this;
    const i = this.sentSteps++;
    switch (plan.kind) {
      case 'text': {
        const delta = word(i);
        this.text += delta;
        this.emit('response.output_text.delta', { ...this.contentRef(), delta });
        break;
      }
      case 'audio': {
        const delta = word(i);
        this.text += delta;
        this.emit('response.output_audio.delta', { ...this.contentRef(), delta: audioPayload(plan.audioChunkBytes) });
        this.emit('response.output_audio_transcript.delta', { ...this.contentRef(), delta });
        break;
      }
      case 'function_call': {
        const delta = ARGUMENT_PIECES[i] ?? '';
        this.text += delta;
        this.emit('response.function_call_arguments.delta', {
          response_id: plan.id,
          item_id: plan.itemId,
          output_index: 0,
          call_id: plan.callId,
          delta,
        });
        break;
      }
    }
  }

  sendCompleted(): void {
    const { plan } = this;
    const ref = this.contentRef();
    switch (plan.kind) {
      case 'text':
        this.emit('response.output_text.done', { ...ref, text: this.text });
        this.emit('response.content_part.done', { ...ref, part: { type: 'text', text: this.text } });
        break;
      case 'audio':
        this.emit('response.output_audio.done', { ...ref });
        this.emit('response.output_audio_transcript.done', { ...ref, transcript: this.text });
        this.emit('response.content_part.done', { ...ref, part: { type: 'audio', transcript: this.text } });
        break;
      case 'function_call':
        this.emit('response.function_call_arguments.done', {
          response_id: plan.id,
          item_id: plan.itemId,
          output_index: 0,
          call_id: plan.callId,
          name: plan.toolName,
          arguments: this.text,
        });
        break;
    }
    const item = this.item('completed');
    this.emit('conversation.item.done', { previous_item_id: plan.previousItemId, item });
    this.emit('response.output_item.done', { response_id: plan.id, output_index: 0, item });
    this.emit('response.done', { response: this.responseObject('completed', null, [item], this.usage()) });
  }

  /** A cancelled response still ends with `response.done`, billed for what it sent. */
  sendCancelled(): void {
    const output = this.preludeSent ? [this.item('incomplete')] : [];
    this.emit('response.done', {
      response: this.responseObject('cancelled', { type: 'cancelled', reason: 'client_cancelled' }, output, this.usage()),
    });
  }

  private usage(): unknown {
    const { plan } = this;
    if (plan.usageOverride !== undefined) return plan.usageOverride;
    return simulatedUsage({
      priorResponses: plan.priorResponses,
      inputAudioBytes: plan.inputAudioBytes,
      textDeltas: this.sentSteps,
      audioDeltas: plan.kind === 'audio' ? this.sentSteps : 0,
    });
  }

  private contentRef(): Json {
    return { response_id: this.plan.id, item_id: this.plan.itemId, output_index: 0, content_index: 0 };
  }

  private item(status: string): Json {
    const { plan } = this;
    if (plan.kind === 'function_call') {
      return {
        id: plan.itemId,
        object: 'realtime.item',
        type: 'function_call',
        status,
        name: plan.toolName,
        call_id: plan.callId,
        arguments: status === 'in_progress' ? '' : this.text,
      };
    }
    const content =
      status === 'in_progress'
        ? []
        : [plan.kind === 'audio' ? { type: 'output_audio', transcript: this.text } : { type: 'output_text', text: this.text }];
    return { id: plan.itemId, object: 'realtime.item', type: 'message', status, role: 'assistant', content };
  }

  private responseObject(status: string, statusDetails: Json | null, output: Json[], usage: unknown): Json {
    const { plan } = this;
    return {
      object: 'realtime.response',
      id: plan.id,
      status,
      status_details: statusDetails,
      output,
      conversation_id: plan.conversationId,
      output_modalities: plan.outputModalities,
      max_output_tokens: 'inf',
      audio: { output: plan.audio },
      usage,
      metadata: plan.metadata,
    };
  }
}
