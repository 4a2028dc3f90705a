import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's Chromium, which CI installs; elsewhere the browser tests are skipped with a reason. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const HAVE_CHROMIUM = existsSync(CHROMIUM);

/** Headless, and quiet: this machine has no network, and Chromium's background fetches would only fail. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * For pages that make WebRTC calls: a fake microphone granted without a
 * prompt; loopback candidates (this machine may have no other interface); and
 * real addresses instead of `.local` mDNS names, which werift would try to
 * resolve, keeping its process alive for seconds after the call.
 */
export const WEBRTC_ARGS = [
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

export interface OpenChromium {
  page: Page;
  context: BrowserContext;
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

/** A headless Chromium with a fresh profile of its own and one page; `extraArgs` e.g. WEBRTC_ARGS. */
export async function openChromium(viewport?: { width: number; height: number }, extraArgs: readonly string[] = []): Promise<OpenChromium> {
  const profile = mkdtempSync(join(tmpdir(), 'relay-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
    ...(viewport ? { viewport } : {}),
    timeout: 20_000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(5_000);
  return {
    page,
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export interface ServedPages {
  url: string;
  close(): Promise<void>;
}

/**
 * Serves a test page (its HTML, or a handler for more than one file) on
 * loopback. `host` names it in the URL: `localhost` makes its origin another
 * than a relay's on 127.0.0.1, so the page's requests are cross-origin ones.
 */
export async function servePages(page: string | RequestListener, host: 'localhost' | '127.0.0.1' = '127.0.0.1'): Promise<ServedPages> {
  const server = createServer(typeof page === 'string' ? (_req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page) : page);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://${host}:${port}/`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
