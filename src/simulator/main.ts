/**
 * Starts a simulator for manual use and prints its URL.
 * Env: SIM_HOST (default 127.0.0.1), SIM_PORT (default 0), SIM_API_KEY, SIM_AZURE=1.
 */
import { startSimulator } from './server.js';

const simulator = await startSimulator({
  host: process.env.SIM_HOST || undefined,
  port: process.env.SIM_PORT ? Number(process.env.SIM_PORT) : 0,
  apiKey: process.env.SIM_API_KEY || undefined,
  azure: process.env.SIM_AZURE === '1',
});
process.stdout.write(`${simulator.url}\n`);

function stop(): void {
  void simulator.close().then(() => process.exit(0));
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
