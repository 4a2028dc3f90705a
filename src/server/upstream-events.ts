import type { SessionBill } from '../billing/session-bill.js';
import type { Report } from '../machines/legs.js';
import { BULK_EVENT_TYPES, scanEventType } from '../protocol/frame-type.js';
import { parseObject, type JsonObject } from '../protocol/json.js';
import type { Deferred, Outgoing } from './pipe.js';

/** Where an upstream's events go once read: the client's pipe, or nowhere (a call's sideband). */
export interface EventSink {
  push(frame: Outgoing): void;
  /** A frame that may leave only once its charge is written; a rejection fails the session closed. */
  pushDeferred(frame: Deferred): void;
}

export interface UpstreamEventsOptions {
  bill: SessionBill;
  /** The model the upstream serves: what a charge prices. */
  servedModel(): string;
  /** Goes to the reader running when a verdict arrives (a charge is written later than it is read). */
  report: Report;
  translate?(type: string, frame: Buffer): Outgoing | null;
}

/** Only the few small lifecycle events are ever parsed; audio never is. */
function parseJson(frame: Buffer): JsonObject | undefined {
  return parseObject(frame.toString('utf8'));
}

/**
 * Reads the lifecycle facts among an upstream's server events, wherever they
 * arrive (the session's own socket, or a call's sideband): a response's start
 * places its hold, its `response.done` and each completed transcription are
 * charged once, before the event goes on to `sink`.
 */
export function takeUpstreamEvent(frame: Buffer, sink: EventSink, options: UpstreamEventsOptions): void {
  const type = scanEventType(frame);
  if (type === undefined) {
    // What the relay cannot read still reaches the client, untouched.
    sink.push(frame);
    return;
  }
  if (!BULK_EVENT_TYPES.has(type)) {
    const { bill, report } = options;
    switch (type) {
      case 'response.created': {
        const response = parseJson(frame)?.response as { id?: unknown } | undefined;
        report({ type: 'RESPONSE_CREATED', responseId: typeof response?.id === 'string' ? response.id : '' });
        bill.responseStarted(report);
        break;
      }
      case 'session.created':
      case 'session.updated': {
        // The transcription model decides how transcription usage is priced.
        const session = parseJson(frame)?.session as { audio?: { input?: { transcription?: { model?: unknown } | null } } } | undefined;
        const configured = session?.audio?.input?.transcription?.model;
        bill.configured({ transcriptionModel: typeof configured === 'string' ? configured : null });
        break;
      }
      case 'response.done': {
        const response = (parseJson(frame)?.response ?? {}) as { id?: unknown; status?: unknown; usage?: unknown };
        sink.pushDeferred(bill.chargeResponse(response, options.servedModel(), report, () => translated(options, type, frame)));
        return;
      }
      case 'conversation.item.input_audio_transcription.completed': {
        const event = parseJson(frame) ?? {};
        const transcription = { itemId: event.item_id, contentIndex: event.content_index, usage: event.usage };
        sink.pushDeferred(bill.chargeTranscription(transcription, options.servedModel(), report, () => translated(options, type, frame)));
        return;
      }
    }
  }
  const outgoing = translated(options, type, frame);
  if (outgoing !== null) sink.push(outgoing);
}

function translated(options: UpstreamEventsOptions, type: string, frame: Buffer): Outgoing | null {
  return options.translate ? options.translate(type, frame) : frame;
}
