import { expect } from 'vitest';
import type { ReceivedEvent, TestClient } from '../helpers/client.js';
import type { RealtimeUsage, TranscriptionUsage } from './invoice.js';

/**
 * Asks for one text response whose `response.done` reports exactly `usage`
 * (the simulator's `metadata.sim_usage`), and returns the `response.done`
 * the client received.
 */
export async function respond(client: TestClient, usage: unknown, extra: Record<string, unknown> = {}): Promise<ReceivedEvent & { response: { id: string; status: string; usage: unknown } }> {
  const after = client.events.length;
  client.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(usage) }, ...extra } });
  const done = (await client.next('response.done', 5_000, after)) as ReceivedEvent & { response: { id: string; status: string; usage: unknown } };
  expect(done.response.usage).toEqual(usage);
  return done;
}

/** Sets the session's input transcription model and waits until the upstream confirms it. */
export async function useTranscriptionModel(client: TestClient, model: string): Promise<void> {
  const after = client.events.length;
  client.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { transcription: { model } } } } });
  await client.next('session.updated', 5_000, after);
}

/** Appends `bytes` bytes of silence (PCM16), commits, and returns the transcription's completed event. */
export async function transcribe(client: TestClient, bytes: number): Promise<{ itemId: string; usage: TranscriptionUsage }> {
  const after = client.events.length;
  client.send({ type: 'input_audio_buffer.append', audio: Buffer.alloc(bytes).toString('base64') });
  client.send({ type: 'input_audio_buffer.commit' });
  const completed = await client.next('conversation.item.input_audio_transcription.completed', 5_000, after);
  return { itemId: `${completed.item_id as string}:${completed.content_index as number}`, usage: completed.usage as TranscriptionUsage };
}

export type { RealtimeUsage };
