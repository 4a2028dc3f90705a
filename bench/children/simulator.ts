/**
 * The upstream: the project's simulator in its own process. It stamps every
 * audio delta it sends with its send time, and reads the stamp of every
 * append it receives (client → upstream latency).
 */
import { startSimulator } from '../../src/simulator/index.js';
import { Histogram } from '../lib/histogram.js';
import { childArgs, serve } from '../lib/ipc.js';
import { ageMicros, hasLeadingType, leadingType, stamp } from '../lib/stamp.js';

export interface SimulatorChildArgs {
  chunkIntervalMs: number;
  audioChunks: number;
  audioChunkBytes: number;
}

export interface SimulatorCounters {
  appends: number;
  appendBytes: number;
  framesIn: number;
  bytesIn: number;
  deltasSent: number;
  framesSent: number;
  bytesSent: number;
  up: ReturnType<Histogram['toJSON']>;
}

const APPEND = leadingType('input_audio_buffer.append');
const AUDIO_DELTA = 'response.output_audio.delta';

const args = childArgs<SimulatorChildArgs>();
const up = new Histogram();
const counters = { appends: 0, appendBytes: 0, framesIn: 0, bytesIn: 0, deltasSent: 0, framesSent: 0, bytesSent: 0 };

const simulator = await startSimulator({
  host: '127.0.0.1',
  port: 0,
  apiKey: 'sk-bench',
  chunkIntervalMs: args.chunkIntervalMs,
  audioChunks: args.audioChunks,
  audioChunkBytes: args.audioChunkBytes,
  tap: {
    received(frame) {
      counters.framesIn++;
      counters.bytesIn += frame.length;
      if (!hasLeadingType(frame, APPEND)) return;
      counters.appends++;
      counters.appendBytes += frame.length;
      const age = ageMicros(frame);
      if (age >= 0) up.record(age);
    },
    serialize(event) {
      if (event.type === AUDIO_DELTA) {
        event.event_id = stamp();
        counters.deltasSent++;
      }
      const text = JSON.stringify(event);
      counters.framesSent++;
      counters.bytesSent += text.length;
      return text;
    },
  },
});

serve(
  {
    reset() {
      up.reset();
      for (const key of Object.keys(counters) as Array<keyof typeof counters>) counters[key] = 0;
    },
    collect(): SimulatorCounters {
      return { ...counters, up: up.toJSON() };
    },
    sessions() {
      return { connections: simulator.connections, openSockets: simulator.socketCount };
    },
  },
  { url: simulator.url },
);
