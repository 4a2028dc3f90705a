import { spawn } from 'node:child_process';
import type { IncomingMessage } from 'node:http';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { FUNCTION_CALL_ARGUMENTS, simulatedUsage, startSimulator } from '../src/simulator/index.js';
import type { Simulator, SimulatorOptions } from '../src/simulator/index.js';

type Json = Record<string, any>;

const OPENAI_PATH = '/v1/realtime?model=gpt-realtime';
const BEARER = { Authorization: 'Bearer sk-test' };

/** A plain ws client that records every frame and lets a test await the ones it expects. */
class Client {
  /** Parsed frames; a frame that is not JSON is kept as `{ raw }`. */
  readonly frames: Json[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private cursor = 0;
  private wake: (() => void) | null = null;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const text = data.toString();
      try {
        this.frames.push(JSON.parse(text) as Json);
      } catch {
        this.frames.push({ raw: text });
      }
      this.wake?.();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.wake?.();
      });
    });
    ws.on('error', () => {});
  }

  send(event: Json): void {
    this.ws.send(JSON.stringify(event));
  }

  /** The next frame (after the last one returned) that matches, skipping the others. */
  async next(match: string | ((frame: Json) => boolean), timeoutMs = 2000): Promise<Json> {
    const test = typeof match === 'string' ? (f: Json) => f.type === match : match;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.cursor < this.frames.length) {
        const frame = this.frames[this.cursor++]!;
        if (test(frame)) return frame;
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.ws.readyState === WebSocket.CLOSED) {
        throw new Error(`no frame matching ${String(match)}; got ${this.frames.map((f) => f.type ?? 'raw').join(', ')}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  /** Every frame from the cursor up to and including the first of `type`. */
  async until(type: string): Promise<Json[]> {
    const start = this.cursor;
    await this.next(type);
    return this.frames.slice(start, this.cursor);
  }
}

let simulators: Simulator[] = [];
let clients: Client[] = [];

afterEach(async () => {
  for (const client of clients) client.ws.terminate();
  await Promise.all(simulators.map((s) => s.close()));
  simulators = [];
  clients = [];
});

async function simulator(opts: SimulatorOptions = {}): Promise<Simulator> {
  const sim = await startSimulator({ chunkIntervalMs: 1, ...opts });
  simulators.push(sim);
  return sim;
}

function dial(sim: Simulator, path = OPENAI_PATH, options: WebSocket.ClientOptions = { headers: BEARER }, protocols?: string[]): Client {
  const client = new Client(new WebSocket(`${sim.url}${path}`, protocols ?? [], options));
  clients.push(client);
  return client;
}

async function connect(sim: Simulator, path?: string, options?: WebSocket.ClientOptions): Promise<Client> {
  const client = dial(sim, path, options);
  await client.next('session.created');
  return client;
}

/** The refusal a header-authenticated client sees: status and body of the failed upgrade. */
function refusal(sim: Simulator, path = OPENAI_PATH, headers: Record<string, string> = BEARER): Promise<{ status: number; body: string }> {
  const ws = new WebSocket(`${sim.url}${path}`, { headers });
  return new Promise((resolve, reject) => {
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body });
        ws.terminate();
      });
    });
    ws.on('open', () => reject(new Error('upgrade was accepted')));
    ws.on('error', () => {});
  });
}

/** Resolves true if a frame or a pong arrives within `ms`: a bounded look for something that must not happen. */
function hearsAnythingWithin(client: Client, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      cleanup();
      resolve(false);
    }, ms);
    const heard = () => {
      cleanup();
      resolve(true);
    };
    const cleanup = () => {
      clearTimeout(timer);
      client.ws.off('message', heard);
      client.ws.off('pong', heard);
    };
    client.ws.on('message', heard);
    client.ws.on('pong', heard);
  });
}

const b64 = (bytes: number) => Buffer.alloc(bytes, 7).toString('base64');

describe('handshake and session', () => {
  it('greets with a GA session.created whose first keys are type and event_id', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    const created = client.frames[0] as Json;
    expect(Object.keys(created).slice(0, 2)).toEqual(['type', 'event_id']);
    expect(created.session).toMatchObject({
      type: 'realtime',
      object: 'realtime.session',
      model: 'gpt-realtime',
      output_modalities: ['audio'],
      tools: [],
      tool_choice: 'auto',
      max_output_tokens: 'inf',
      audio: {
        input: { format: { type: 'audio/pcm', rate: 24000 }, transcription: null, turn_detection: { type: 'server_vad' } },
        output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy' },
      },
    });
    expect(sim.connections).toBe(1);
    expect(sim.handshakes[0]).toMatchObject({ path: '/v1/realtime', query: { model: 'gpt-realtime' }, headers: { authorization: 'Bearer sk-test' } });
  });

  it('opens a transcription session for intent=transcription', async () => {
    const sim = await simulator();
    const client = await connect(sim, '/v1/realtime?intent=transcription');
    expect((client.frames[0] as Json).session).toMatchObject({ type: 'transcription', object: 'realtime.transcription_session' });
  });

  it('merges session.update into session.updated and refuses beta-shaped fields without closing', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'session.update', session: { type: 'realtime', instructions: 'Be terse.', audio: { output: { voice: 'marin' } } } });
    const updated = await client.next('session.updated');
    expect(updated.session.instructions).toBe('Be terse.');
    expect(updated.session.audio.output).toMatchObject({ voice: 'marin', format: { type: 'audio/pcm', rate: 24000 } });
    expect(updated.session.audio.input.turn_detection.type).toBe('server_vad');

    client.send({ type: 'session.update', event_id: 'evt_beta', session: { modalities: ['text'], voice: 'echo' } });
    const error = await client.next('error');
    expect(error.error).toMatchObject({ type: 'invalid_request_error', code: 'unknown_parameter', param: 'session.modalities', event_id: 'evt_beta' });

    client.send({ type: 'session.update', session: { output_modalities: ['text'] } });
    const again = await client.next('session.updated');
    expect(again.session.output_modalities).toEqual(['text']);
    expect(again.session.audio.output.voice).toBe('marin');
  });

  it('answers an unknown event type with invalid_value and keeps the socket open', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'nope' });
    const error = await client.next('error');
    expect(error.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_value', param: 'type' });
    expect(error.error.message).toContain("Invalid value: 'nope'");
    client.ws.send('not json');
    expect((await client.next('error')).error.code).toBe('invalid_json');
    client.send({ type: 'session.update', session: {} });
    await client.next('session.updated');
    expect(client.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('refuses the beta header with beta_api_shape_disabled and close 4000', async () => {
    const sim = await simulator();
    const client = dial(sim, OPENAI_PATH, { headers: { ...BEARER, 'OpenAI-Beta': 'realtime=v1' } });
    const error = await client.next('error');
    expect(error.error.code).toBe('beta_api_shape_disabled');
    expect(await client.closed).toEqual({ code: 4000, reason: 'invalid_request_error.beta_api_shape_disabled' });
    expect(client.frames.some((f) => f.type === 'session.created')).toBe(false);
    expect(sim.handshakes[0]?.headers['openai-beta']).toBe('realtime=v1');
  });

  it('refuses a missing credential, a wrong key and an unknown path before the upgrade', async () => {
    const sim = await simulator({ apiKey: 'sk-right' });
    const missing = await refusal(sim, OPENAI_PATH, {});
    expect(missing.status).toBe(401);
    const wrong = await refusal(sim, OPENAI_PATH, { Authorization: 'Bearer sk-wrong' });
    expect(wrong.status).toBe(401);
    expect(JSON.parse(wrong.body).error.code).toBe('invalid_api_key');
    const azureShape = await refusal(sim, OPENAI_PATH, { 'api-key': 'sk-right' });
    expect(azureShape.status).toBe(401);
    expect((await refusal(sim, '/v2/realtime?model=x', { Authorization: 'Bearer sk-right' })).status).toBe(404);
    await connect(sim, OPENAI_PATH, { headers: { Authorization: 'Bearer sk-right' } });
    expect(sim.connections).toBe(1);
  });

  it('selects the realtime subprotocol and takes a browser key from it', async () => {
    const sim = await simulator({ apiKey: 'sk-browser' });
    const client = dial(sim, OPENAI_PATH, {}, ['realtime', 'openai-insecure-api-key.sk-browser']);
    await client.next('session.created');
    expect(client.ws.protocol).toBe('realtime');
  });

  it('poses as Azure: accepts both Azure URL shapes with api-key and refuses the OpenAI shape', async () => {
    const sim = await simulator({ azure: true, apiKey: 'az-key' });
    const ga = await connect(sim, '/openai/v1/realtime?model=my-deployment', { headers: { 'api-key': 'az-key' } });
    expect((ga.frames[0] as Json).session.model).toBe('my-deployment');
    const preview = await connect(sim, '/openai/realtime?api-version=2025-04-01-preview&deployment=dep2', { headers: { 'api-key': 'az-key' } });
    expect((preview.frames[0] as Json).session.model).toBe('dep2');
    expect((await refusal(sim, OPENAI_PATH, { 'api-key': 'az-key' })).status).toBe(404);
    expect((await refusal(sim, '/openai/realtime?deployment=dep2', { 'api-key': 'az-key' })).status).toBe(404);
    expect((await refusal(sim, '/openai/v1/realtime?model=d', { 'api-key': 'wrong' })).status).toBe(401);
    expect(sim.handshakes.map((h) => h.path)).toEqual([
      '/openai/v1/realtime',
      '/openai/realtime',
      '/v1/realtime',
      '/openai/realtime',
      '/openai/v1/realtime',
    ]);
    expect(sim.handshakes[1]).toMatchObject({ query: { 'api-version': '2025-04-01-preview', deployment: 'dep2' }, headers: { 'api-key': 'az-key' } });
    expect(sim.connections).toBe(2);
  });
});

describe('responses', () => {
  it('streams a text response in GA order and bills it by the documented rule', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'session.update', session: { output_modalities: ['text'] } });
    await client.next('session.updated');
    client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] } });
    await client.next('conversation.item.added');
    await client.next('conversation.item.done');
    client.send({ type: 'response.create' });
    const events = await client.until('response.done');
    expect(events.map((e) => e.type)).toEqual([
      'response.created',
      'response.output_item.added',
      'conversation.item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'conversation.item.done',
      'response.output_item.done',
      'response.done',
    ]);
    expect(events[0]!.response).toMatchObject({ id: 'resp_1', status: 'in_progress' });
    const done = events.at(-1)!.response;
    expect(done.status).toBe('completed');
    expect(done.usage).toEqual({
      total_tokens: 14,
      input_tokens: 10,
      output_tokens: 4,
      input_token_details: { text_tokens: 10, audio_tokens: 0, image_tokens: 0, cached_tokens: 0, cached_tokens_details: { text_tokens: 0, audio_tokens: 0, image_tokens: 0 } },
      output_token_details: { text_tokens: 4, audio_tokens: 0 },
    });

    client.send({ type: 'response.create' });
    const second = (await client.next('response.done')).response;
    expect(second.id).toBe('resp_2');
    expect(second.usage.input_token_details).toMatchObject({ text_tokens: 15, cached_tokens: 8, cached_tokens_details: { text_tokens: 8 } });
    expect(second.usage.total_tokens).toBe(19);
  });

  it('streams audio deltas of the configured size and bills appended input audio', async () => {
    const sim = await simulator({ audioChunkBytes: 1000, audioChunks: 3 });
    const client = await connect(sim);
    client.send({ type: 'input_audio_buffer.append', audio: b64(4800) });
    client.send({ type: 'input_audio_buffer.append', audio: b64(4801) });
    client.send({ type: 'response.create' });
    const events = await client.until('response.done');
    const audio = events.filter((e) => e.type === 'response.output_audio.delta');
    const transcript = events.filter((e) => e.type === 'response.output_audio_transcript.delta');
    expect(audio).toHaveLength(3);
    expect(transcript).toHaveLength(3);
    for (const delta of audio) expect(Buffer.from(delta.delta, 'base64')).toHaveLength(1000);
    expect(events.map((e) => e.type)).toContain('response.output_audio_transcript.done');
    const usage = events.at(-1)!.response.usage;
    expect(usage.input_token_details.audio_tokens).toBe(3);
    expect(usage.output_token_details).toEqual({ text_tokens: 3, audio_tokens: 6 });
    expect(usage).toEqual(simulatedUsage({ priorResponses: 0, inputAudioBytes: 9601, textDeltas: 3, audioDeltas: 3 }));
  });

  it('allows one response at a time', async () => {
    const sim = await simulator({ chunkIntervalMs: 20 });
    const client = await connect(sim);
    client.send({ type: 'response.create' });
    await client.next('response.created');
    client.send({ type: 'response.create' });
    const error = await client.next('error');
    expect(error.error.code).toBe('conversation_already_has_active_response');
    await client.next('response.done');
    expect(client.frames.filter((f) => f.type === 'response.created')).toHaveLength(1);
  });

  it('bills a cancelled response for the deltas it actually sent', async () => {
    const sim = await simulator({ chunkIntervalMs: 5, audioChunks: 200 });
    const client = await connect(sim);
    client.send({ type: 'response.cancel' });
    expect((await client.next('error')).error.code).toBe('response_cancel_not_active');
    client.send({ type: 'response.create' });
    await client.next('response.output_audio.delta');
    client.send({ type: 'response.cancel' });
    const done = (await client.next('response.done')).response;
    const sent = client.frames.filter((f) => f.type === 'response.output_audio.delta').length;
    expect(done.status).toBe('cancelled');
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(200);
    expect(done.usage.output_token_details).toEqual({ text_tokens: sent, audio_tokens: 2 * sent });
    // Nothing of the cancelled response follows its response.done.
    client.send({ type: 'session.update', session: {} });
    const rest = await client.until('session.updated');
    expect(rest.map((e) => e.type)).toEqual(['session.updated']);
  });

  it('reports metadata.sim_usage verbatim', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    const crafted = { total_tokens: 7, input_tokens: 100, output_tokens: 3, input_token_details: { text_tokens: 50, cached_tokens: 60, image_tokens: 50 } };
    client.send({ type: 'response.create', response: { output_modalities: ['text'], metadata: { sim_usage: JSON.stringify(crafted) } } });
    const done = (await client.next('response.done')).response;
    expect(done.usage).toEqual(crafted);
    expect(done.metadata.sim_usage).toBe(JSON.stringify(crafted));
  });

  it('calls the first tool after a user message and answers after its output', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'session.update', session: { output_modalities: ['text'], tools: [{ type: 'function', name: 'get_weather', parameters: { type: 'object', properties: {} } }] } });
    await client.next('session.updated');
    client.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'weather?' }] } });
    client.send({ type: 'response.create' });
    const events = await client.until('response.done');
    const added = events.find((e) => e.type === 'response.output_item.added')!;
    expect(added.item).toMatchObject({ type: 'function_call', name: 'get_weather', arguments: '' });
    const args = events.find((e) => e.type === 'response.function_call_arguments.done')!;
    expect(args.arguments).toBe(FUNCTION_CALL_ARGUMENTS);
    expect(JSON.parse(args.arguments)).toEqual({ ok: true });
    expect(events.filter((e) => e.type === 'response.function_call_arguments.delta').map((e) => e.delta).join('')).toBe(FUNCTION_CALL_ARGUMENTS);
    expect(events.at(-1)!.response.status).toBe('completed');

    client.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: added.item.call_id, output: '{"sunny":true}' } });
    client.send({ type: 'response.create' });
    const answer = await client.until('response.done');
    expect(answer.filter((e) => e.type === 'response.output_text.delta')).toHaveLength(4);
    expect(answer.some((e) => e.type.startsWith('response.function_call'))).toBe(false);
  });
});

describe('input audio', () => {
  it('commits a user item and bills transcription in tokens', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'session.update', session: { audio: { input: { transcription: { model: 'gpt-4o-transcribe' } } } } });
    await client.next('session.updated');
    client.send({ type: 'input_audio_buffer.append', audio: b64(24000) });
    client.send({ type: 'input_audio_buffer.append', audio: b64(24001) });
    client.send({ type: 'input_audio_buffer.commit' });
    const events = await client.until('conversation.item.input_audio_transcription.completed');
    expect(events.map((e) => e.type)).toEqual([
      'input_audio_buffer.committed',
      'conversation.item.added',
      'conversation.item.done',
      'conversation.item.input_audio_transcription.delta',
      'conversation.item.input_audio_transcription.completed',
    ]);
    expect(events[1]!.item).toMatchObject({ type: 'message', role: 'user' });
    expect(events.at(-1)!.usage).toEqual({
      type: 'tokens',
      input_tokens: 11,
      output_tokens: 3,
      total_tokens: 14,
      input_token_details: { text_tokens: 0, audio_tokens: 11 },
    });
  });

  it('bills whisper-1 transcription by the second and clears the buffer', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'session.update', session: { audio: { input: { transcription: { model: 'whisper-1' } } } } });
    await client.next('session.updated');
    client.send({ type: 'input_audio_buffer.append', audio: b64(1000) });
    client.send({ type: 'input_audio_buffer.clear' });
    await client.next('input_audio_buffer.cleared');
    client.send({ type: 'input_audio_buffer.commit' });
    expect((await client.next('error')).error.code).toBe('input_audio_buffer_commit_empty');
    client.send({ type: 'input_audio_buffer.append', audio: b64(48001) });
    client.send({ type: 'input_audio_buffer.commit' });
    const completed = await client.next('conversation.item.input_audio_transcription.completed');
    expect(completed.usage).toEqual({ type: 'duration', seconds: 2 });
  });
});

describe('handshake faults', () => {
  it('refuses with 401 and a body a ws client can read', async () => {
    const sim = await simulator();
    sim.queueHandshakeFault({ kind: 'refuse', status: 401 });
    const { status, body } = await refusal(sim);
    expect(status).toBe(401);
    expect(JSON.parse(body)).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_api_key' } });
    await connect(sim);
  });

  it('applies a queued refusal to the given number of handshakes', async () => {
    const sim = await simulator();
    sim.queueHandshakeFault({ kind: 'refuse', status: 429 }, 2);
    const first = await refusal(sim);
    expect(first.status).toBe(429);
    expect(JSON.parse(first.body).error.code).toBe('rate_limit_exceeded');
    const second = await refusal(sim);
    expect(second.status).toBe(429);
    sim.queueHandshakeFault({ kind: 'refuse', status: 503, body: { error: { message: 'busy', type: 'server_error', code: 'overloaded' } } });
    expect(JSON.parse((await refusal(sim)).body).error.code).toBe('overloaded');
    await connect(sim);
    expect(sim.handshakes).toHaveLength(4);
  });

  it('hangs the upgrade until the client gives up', async () => {
    const sim = await simulator({ fault: { kind: 'hang' } });
    const client = dial(sim, OPENAI_PATH, { headers: BEARER, handshakeTimeout: 200 });
    const error = await new Promise<Error>((resolve) => client.ws.once('error', resolve));
    expect(error.message).toMatch(/handshake has timed out/);
    expect(sim.connections).toBe(0);
    expect(sim.handshakes).toHaveLength(1);
  });

  it('completes a silent upgrade that never sends session.created nor pongs', async () => {
    const sim = await simulator();
    sim.queueHandshakeFault({ kind: 'silence' });
    const client = dial(sim);
    await new Promise((resolve) => client.ws.once('open', resolve));
    client.ws.ping();
    expect(await hearsAnythingWithin(client, 200)).toBe(false);
    expect(sim.connections).toBe(1);
  });
});

describe('session faults', () => {
  it('sends a garbage frame and goes on', async () => {
    const sim = await simulator();
    sim.queueSessionFault({ kind: 'garbage' });
    const client = await connect(sim);
    await client.next((f) => 'raw' in f);
    client.send({ type: 'session.update', session: {} });
    await client.next('session.updated');
  });

  it('drops the socket without a close frame', async () => {
    const sim = await simulator();
    sim.queueSessionFault({ kind: 'drop' });
    const client = dial(sim);
    expect((await client.closed).code).toBe(1006);
  });

  it('closes with the given code and reason', async () => {
    const sim = await simulator();
    sim.queueSessionFault({ kind: 'close', code: 4321, reason: 'bye' });
    const client = dial(sim);
    expect(await client.closed).toEqual({ code: 4321, reason: 'bye' });
  });

  it('expires the session with session_expired and close 1001', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'simulator.fault', fault: { kind: 'session_expired' } });
    const error = await client.next('error');
    expect(error.error).toMatchObject({ type: 'invalid_request_error', code: 'session_expired' });
    expect((await client.closed).code).toBe(1001);
  });

  it('falls silent in band: no events, no pongs', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.ws.ping();
    await new Promise((resolve) => client.ws.once('pong', resolve));
    client.send({ type: 'simulator.fault', fault: { kind: 'silence' } });
    client.send({ type: 'session.update', session: {} });
    client.ws.ping();
    expect(await hearsAnythingWithin(client, 200)).toBe(false);
    expect(client.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('stops reading, so the client buffer grows', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'simulator.fault', fault: { kind: 'slow_reader' } });
    const frame = JSON.stringify({ type: 'input_audio_buffer.append', audio: b64(3 * 1024 * 1024) });
    for (let i = 0; i < 40 && client.ws.bufferedAmount < 16 * 1024 * 1024; i++) {
      client.ws.send(frame);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(client.ws.bufferedAmount).toBeGreaterThanOrEqual(16 * 1024 * 1024);
  });

  it('ends a turn as server VAD would: commits the buffer and starts a response nobody asked for', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'input_audio_buffer.append', audio: b64(4_800) });
    client.send({ type: 'simulator.end_of_speech' });
    await client.next('input_audio_buffer.committed');
    const created = await client.next('response.created');
    expect(created.response.status).toBe('in_progress');
    await client.next('response.done');
    expect(client.frames.map((f) => f.type)).toContain('input_audio_buffer.speech_stopped');
  });

  it('starts no response at the end of a turn when turn detection does not create them', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { turn_detection: { type: 'server_vad', create_response: false } } } } });
    await client.next('session.updated');
    client.send({ type: 'input_audio_buffer.append', audio: b64(4_800) });
    client.send({ type: 'simulator.end_of_speech' });
    await client.next('input_audio_buffer.committed');
    client.send({ type: 'session.update', session: {} });
    await client.next('session.updated');
    expect(client.frames.some((f) => f.type === 'response.created')).toBe(false);
  });

  it('stalls the next response until it is cancelled', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'simulator.fault', fault: { kind: 'stall_response' } });
    client.send({ type: 'response.create' });
    await client.next('response.created');
    // Proof that the stream stalled rather than lagged: a later request is answered first.
    client.send({ type: 'session.update', session: {} });
    await client.next('session.updated');
    client.send({ type: 'response.cancel' });
    const done = await client.next('response.done');
    expect(client.frames.map((f) => f.type)).toEqual(['session.created', 'response.created', 'session.updated', 'response.done']);
    expect(done.response.status).toBe('cancelled');
    expect(done.response.usage.output_tokens).toBe(0);
  });

  it('drops mid-response after the first delta when queued so', async () => {
    const sim = await simulator();
    sim.queueSessionFault({ kind: 'drop', when: 'mid-response' });
    const client = await connect(sim);
    client.send({ type: 'response.create' });
    expect((await client.closed).code).toBe(1006);
    expect(client.frames.filter((f) => f.type === 'response.output_audio.delta')).toHaveLength(1);
    expect(client.frames.some((f) => f.type === 'response.done')).toBe(false);
  });

  it('strikes an in-band fault mid-response', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'simulator.fault', fault: { kind: 'close', code: 4001, reason: 'mid', when: 'mid-response' } });
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    expect(await client.closed).toEqual({ code: 4001, reason: 'mid' });
    expect(client.frames.filter((f) => f.type === 'response.output_text.delta')).toHaveLength(1);
  });

  it('stalls mid-response and bills the delta sent before the stall', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'simulator.fault', fault: { kind: 'stall_response', when: 'mid-response' } });
    client.send({ type: 'response.create', response: { output_modalities: ['text'] } });
    await client.next('response.output_text.delta');
    client.send({ type: 'session.update', session: {} });
    await client.next('session.updated');
    client.send({ type: 'response.cancel' });
    const done = await client.next('response.done');
    expect(done.response.status).toBe('cancelled');
    expect(done.response.usage.output_token_details.text_tokens).toBe(1);
  });

  it('refuses an in-band fault it cannot strike', async () => {
    const sim = await simulator();
    const client = await connect(sim);
    client.send({ type: 'simulator.fault', fault: { kind: 'close', code: 1006 } });
    expect((await client.next('error')).error.code).toBe('invalid_value');
    expect(() => sim.queueSessionFault({ kind: 'close', code: 1005 })).toThrow(RangeError);
  });
});

describe('lifecycle', () => {
  /**
   * Run in a child process, where no test runner holds timers or sockets of
   * its own: after close() the census of handles must be empty, and the
   * process must then exit by itself.
   */
  const LIFECYCLE_SCRIPT = `
    import WebSocket from 'ws';
    import { startSimulator } from './src/simulator/index.js';
    const watched = ['TCPServerWrap', 'TCPSocketWrap', 'Timeout', 'Immediate'];
    const census = () => process.getActiveResourcesInfo().filter((r) => watched.includes(r)).sort();
    const sim = await startSimulator({ chunkIntervalMs: 50, audioChunks: 1000 });
    const streaming = new WebSocket(sim.url + '${OPENAI_PATH}', { headers: { Authorization: 'Bearer k' } });
    streaming.on('open', () => streaming.send(JSON.stringify({ type: 'response.create' })));
    await new Promise((resolve) => streaming.on('message', (d) => String(d).includes('output_audio.delta') && resolve()));
    sim.queueHandshakeFault({ kind: 'hang' });
    const hanging = new WebSocket(sim.url + '${OPENAI_PATH}', { headers: { Authorization: 'Bearer k' } });
    hanging.on('error', () => {});
    while (sim.socketCount < 2) await new Promise((resolve) => setTimeout(resolve, 5));
    const during = census();
    await sim.close();
    await Promise.all([streaming, hanging].map((ws) => ws.readyState === WebSocket.CLOSED || new Promise((resolve) => ws.once('close', resolve))));
    console.log(JSON.stringify({ during, after: census(), openSockets: sim.socketCount }));
  `;

  it('leaves no handle or timer behind after close()', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', LIFECYCLE_SCRIPT], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exitCode = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(exitCode).toBe(0);
    const report = JSON.parse(output) as { during: string[]; after: string[]; openSockets: number };
    expect(report.during).toEqual(expect.arrayContaining(['TCPServerWrap', 'TCPSocketWrap', 'Timeout']));
    expect(report.after).toEqual([]);
    expect(report.openSockets).toBe(0);
  }, 15_000);

  it('main prints a URL that serves sessions', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/simulator/main.ts'], {
      env: { ...process.env, SIM_PORT: '0', SIM_HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).once('line', resolve);
        child.once('exit', (code) => reject(new Error(`main exited with ${String(code)}`)));
      });
      expect(url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
      const client = new Client(new WebSocket(`${url}${OPENAI_PATH}`, { headers: BEARER }));
      clients.push(client);
      await client.next('session.created');
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  }, 15_000);
});
