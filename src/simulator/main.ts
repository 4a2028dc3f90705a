/**
 * Starts a simulator for manual use and prints its URL.
 * Env: SIM_HOST (default 127.0.0.1), SIM_PORT (default 0), SIM_API_KEY, SIM_AZURE=1,
 * SIM_SIP_WEBHOOK_URL and SIM_SIP_WEBHOOK_SECRET (where `POST /sim/sip/calls` announces a phone call).
 */
import { startSimulator } from './server.js';

const simulator = await startSimulator({
  host: process.env.SIM_HOST || undefined,
  port: process.env.SIM_PORT ? Number(process.env.SIM_PORT) : 0,
  apiKey: process.env.SIM_API_KEY || undefined,
  azure: process.env.SIM_AZURE === '1',
  callWebhook: process.env.SIM_SIP_WEBHOOK_URL ? { url: process.env.SIM_SIP_WEBHOOK_URL, secret: process.env.SIM_SIP_WEBHOOK_SECRET ?? '' } : undefined,
});
process.stdout.write(`${simulator.url}\n`);

function stop(): void {
  void simulator.close().then(() => process.exit(0));
}
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
