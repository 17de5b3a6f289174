import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Page } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The browser viewer library bundled as one script exposing `window.subsecond`. */
export async function bundleViewerLib(): Promise<string> {
	const result = await build({
		entryPoints: [path.join(root, 'client/web/lib/index.ts')],
		bundle: true,
		format: 'iife',
		globalName: 'subsecond',
		platform: 'browser',
		target: 'es2022',
		write: false,
		minify: false,
		logLevel: 'silent',
		tsconfig: path.join(root, 'client/web/tsconfig.json'),
	});
	const out = result.outputFiles[0];
	if (!out) throw new Error('esbuild produced nothing');
	return out.text;
}

// The page a test opens: watches ?stream= on ?server= with the library and
// records what the <video> element presents, frame by frame.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>subsecond test viewer</title></head>
<body>
<video id="v" muted playsinline autoplay></video>
<script src="/viewer.js"></script>
<script>
(async () => {
	const q = new URLSearchParams(location.search);
	const state = (window.__state = { frames: 0, width: 0, height: 0, firstFrameMs: null, events: [], error: null, joined: false, stats: null });
	const t0 = performance.now();
	const video = document.getElementById('v');
	const onFrame = (_now, meta) => {
		state.frames++;
		state.width = meta.width;
		state.height = meta.height;
		if (state.firstFrameMs === null) state.firstFrameMs = performance.now() - t0;
		video.requestVideoFrameCallback(onFrame);
	};
	video.requestVideoFrameCallback(onFrame);
	try {
		const viewer = await subsecond.watch({ server: q.get('server'), stream: q.get('stream'), token: q.get('token') || undefined, statsIntervalMs: 500 });
		window.__viewer = viewer;
		state.joined = true;
		for (const ev of ['live', 'offline', 'reconnecting', 'tracks', 'close']) viewer.on(ev, (arg) => state.events.push({ ev, arg: typeof arg === 'string' ? arg : undefined, at: performance.now() - t0 }));
		viewer.on('error', (e, fatal) => state.events.push({ ev: 'error', arg: String(e && e.message), fatal, at: performance.now() - t0 }));
		viewer.on('stats', (s) => (state.stats = s));
		await viewer.attach(video);
	} catch (e) {
		state.error = { message: String(e && e.message), code: e && e.code };
	}
})();
</script>
</body></html>`;

export interface PageServer {
	url: string;
	close(): Promise<void>;
}

/** Serves the test page and the bundled library on 127.0.0.1 (another origin than the server under test). */
export async function startPageServer(bundle: string): Promise<PageServer> {
	const server = http.createServer((req, res) => {
		const p = new URL(req.url ?? '/', 'http://x').pathname;
		if (p === '/viewer.js') {
			res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
		} else if (p === '/') {
			res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
		} else {
			res.writeHead(404).end();
		}
	});
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	const port = (server.address() as AddressInfo).port;
	return {
		url: `http://127.0.0.1:${port}/`,
		close: () =>
			new Promise<void>((resolve) => {
				server.close(() => resolve());
				server.closeAllConnections();
			}),
	};
}

// Debian's Chromium with the flags this environment needs, shared with the latency probe.
export { launchChromium } from '../../bench/probe/chromium.js';

export interface PageState {
	frames: number;
	width: number;
	height: number;
	firstFrameMs: number | null;
	events: { ev: string; arg?: string; fatal?: boolean; at: number }[];
	error: { message: string; code?: string } | null;
	joined: boolean;
	stats: unknown;
}

export function pageState(page: Page): Promise<PageState> {
	return page.evaluate(() => (globalThis as unknown as { __state: PageState }).__state);
}
