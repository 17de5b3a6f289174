import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';

/** Debian's Chromium with the flags this environment needs (see DESIGN.md). */
export const CHROMIUM_ARGS = [
	'--no-sandbox',
	'--disable-gpu',
	'--disable-quic',
	'--no-first-run',
	'--disable-background-networking',
	'--disable-component-update',
	'--disable-sync',
	'--autoplay-policy=no-user-gesture-required',
	// Real host candidates instead of mDNS names that Janus and tests cannot resolve.
	'--disable-features=WebRtcHideLocalIpsWithMdns',
];

/** Playwright gives the browser a fresh, empty profile of its own. */
export async function launchChromium(): Promise<Browser> {
	return chromium.launch({
		executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
		headless: true,
		args: CHROMIUM_ARGS,
	});
}

/** Bundles a browser entry point (TypeScript) to one script. */
export async function bundle(entry: string): Promise<string> {
	const out = await esbuild.build({
		entryPoints: [entry],
		bundle: true,
		format: 'iife',
		target: 'chrome110',
		write: false,
		sourcemap: false,
		logLevel: 'silent',
	});
	return out.outputFiles[0]?.text ?? '';
}

/**
 * A tiny page server: `/` is an HTML page with a muted, autoplaying <video>
 * and the bundled script. Served from its own origin on loopback.
 */
export async function servePage(script: string): Promise<{ url: string; close: () => Promise<void> }> {
	const html = `<!doctype html><html><head><meta charset="utf-8"><title>probe</title></head>
<body style="margin:0;background:#000"><video muted autoplay playsinline style="width:100vw"></video>
<script>${script.replace(/<\/script/g, '<\\/script')}</script></body></html>`;
	const server = http.createServer((_req, res) => {
		res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
		res.end(html);
	});
	await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
	const { port } = server.address() as AddressInfo;
	return {
		url: `http://127.0.0.1:${port}/`,
		close: () =>
			new Promise<void>((r) => {
				server.closeAllConnections();
				server.close(() => r());
			}),
	};
}

export type { Browser, Page };
