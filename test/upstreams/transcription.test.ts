import { afterEach, describe, expect, it } from 'vitest';
import { TestClient, type ReceivedEvent } from '../helpers/client.js';
import { startTestRelay, type LedgerTestRelay } from '../helpers/relay.js';
import { expectedTranscriptionTokenCost, WHISPER_NANO_PER_SECOND } from './expected-cost.js';

let stack: LedgerTestRelay | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

/** One second of 24 kHz PCM16 silence. */
const ONE_SECOND = Buffer.alloc(48_000).toString('base64');

async function transcribe(client: TestClient, seconds: number): Promise<ReceivedEvent> {
  const before = client.count('conversation.item.input_audio_transcription.completed');
  for (let i = 0; i < seconds; i++) client.send({ type: 'input_audio_buffer.append', audio: ONE_SECOND });
  client.send({ type: 'input_audio_buffer.commit' });
  await client.until(() => client.count('conversation.item.input_audio_transcription.completed') > before, 'a transcription');
  return client.events.filter((e) => e.type === 'conversation.item.input_audio_transcription.completed').at(-1)!;
}

function transcriptionSession(model: string): object {
  return { type: 'session.update', session: { type: 'transcription', audio: { input: { transcription: { model } } } } };
}

describe('transcription sessions (?intent=transcription)', () => {
  it('are admitted as gpt-4o-transcribe, dial the transcription endpoint and bill the configured model by duration', async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    const client = TestClient.connect(stack.realtimeUrl({ intent: 'transcription' }), { key: stack.key });
    const created = await client.next('session.created');
    expect(created.session).toMatchObject({ type: 'transcription' });
    client.send(transcriptionSession('whisper-1'));
    await client.next('session.updated');
    const completed = await transcribe(client, 2);
    expect(completed.usage).toEqual({ type: 'duration', seconds: 2 });
    client.close();
    await stack.idle();

    expect(stack.sim!.handshakes[0]).toMatchObject({ path: '/v1/realtime', query: { intent: 'transcription' } });
    expect(stack.sessions()[0]!.model).toBe('gpt-4o-transcribe');
    const charges = await stack.ledger.usage({ key: 'demo' });
    expect(charges).toEqual([expect.objectContaining({ kind: 'transcription', model: 'whisper-1', costNano: 2n * WHISPER_NANO_PER_SECOND })]);
    expect(stack.settlements()[0]).toMatchObject({ chargeCount: 1, totalNano: 2n * WHISPER_NANO_PER_SECOND });
  });

  it('bills each transcription at the model configured when it was made', async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    const client = TestClient.connect(stack.realtimeUrl({ intent: 'transcription' }), { key: stack.key });
    await client.next('session.created');
    client.send(transcriptionSession('gpt-4o-mini-transcribe'));
    await client.next('session.updated');
    const first = await transcribe(client, 1);
    client.send(transcriptionSession('gpt-4o-transcribe'));
    await client.until(() => client.count('session.updated') === 2, 'the second session.updated');
    const second = await transcribe(client, 1);
    client.close();
    await stack.idle();

    const charges = await stack.ledger.usage({ key: 'demo' });
    expect(charges.map((c) => [c.model, c.costNano])).toEqual([
      ['gpt-4o-mini-transcribe', expectedTranscriptionTokenCost('gpt-4o-mini-transcribe', first.usage as never)],
      ['gpt-4o-transcribe', expectedTranscriptionTokenCost('gpt-4o-transcribe', second.usage as never)],
    ]);
  });

  it('translates a beta transcription_session.update and bills the model it names', async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    const client = TestClient.connect(stack.realtimeUrl({ intent: 'transcription' }), { key: stack.key, headers: { 'OpenAI-Beta': 'realtime=v1' } });
    await client.next('transcription_session.created');
    client.send({
      type: 'transcription_session.update',
      session: { input_audio_format: 'pcm16', input_audio_transcription: { model: 'gpt-4o-mini-transcribe', language: 'en' }, modalities: ['text'] },
    });
    const updated = await client.next('transcription_session.updated');
    // Beta shape back; GA would have refused the flat fields (and `modalities`) with an error.
    expect(updated.session).toMatchObject({ input_audio_format: 'pcm16', input_audio_transcription: { model: 'gpt-4o-mini-transcribe', language: 'en' } });
    expect(updated.session).not.toHaveProperty('audio');
    const completed = await transcribe(client, 1);
    expect(client.count('error')).toBe(0);
    client.close();
    await stack.idle();

    const charges = await stack.ledger.usage({ key: 'demo' });
    expect(charges).toEqual([
      expect.objectContaining({ kind: 'transcription', model: 'gpt-4o-mini-transcribe', costNano: expectedTranscriptionTokenCost('gpt-4o-mini-transcribe', completed.usage as never) }),
    ]);
  });

  it('bills input transcription in a conversation session at its configured model, apart from the responses', async () => {
    stack = await startTestRelay({ simulator: { chunkIntervalMs: 1 } });
    const client = stack.connect();
    await client.next('session.created');
    client.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { transcription: { model: 'gpt-4o-mini-transcribe' } } } } });
    await client.next('session.updated');
    const completed = await transcribe(client, 1);
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await client.next('response.done');
    client.close();
    await stack.idle();

    const charges = await stack.ledger.usage({ key: 'demo' });
    expect(charges.map((c) => [c.kind, c.model])).toEqual([
      ['transcription', 'gpt-4o-mini-transcribe'],
      ['response', 'gpt-realtime'],
    ]);
    expect(charges[0]!.costNano).toBe(expectedTranscriptionTokenCost('gpt-4o-mini-transcribe', completed.usage as never));
  });
});
