import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from '../../server/server.js';
import { stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { publishFromFfmpeg } from '../helpers/flv-publisher.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';

const require = createRequire(import.meta.url);
const HLS_JS = fs.readFileSync(require.resolve('hls.js/dist/hls.min.js'), 'utf8');

/** The page: hls.js in low-latency mode on a muted, autoplaying video; state exposed on window. */
const PAGE = `<!doctype html><html><body><video id="v" muted autoplay playsinline></video>
<script src="/hls.js"></script>
<script>
window.state = { errors: [], fatal: null, latency: null, parts: 0, canBlockReload: false, lowLatency: false };
window.start = (src) => {
	const hls = new Hls({ lowLatencyMode: true });
	window.hls = hls;
	hls.on(Hls.Events.ERROR, (_e, d) => { window.state.errors.push(d.details); if (d.fatal) window.state.fatal = d.details; });
	hls.on(Hls.Events.LEVEL_UPDATED, (_e, d) => {
		window.state.parts = d.details.partList ? d.details.partList.length : 0;
		window.state.canBlockReload = d.details.canBlockReload;
		window.state.lowLatency = hls.lowLatencyMode;
	});
	hls.loadSource(src);
	hls.attachMedia(document.getElementById('v'));
};
window.snapshot = () => {
	const v = document.getElementById('v');
	// The program date time of the picture on screen: when the server got that frame.
	const pd = window.hls && window.hls.playingDate;
	return { t: v.currentTime, width: v.videoWidth, height: v.videoHeight, behind: pd ? Date.now() - pd.getTime() : null, ...window.state };
};
</script></body></html>`;

interface Snapshot {
	t: number;
	width: number;
	height: number;
	/** ms between the server receiving the frame on screen and now. */
	behind: number | null;
	errors: string[];
	fatal: string | null;
	parts: number;
	canBlockReload: boolean;
	lowLatency: boolean;
}

describe('hls.js in Chromium', () => {
	let server: Server;
	let page: http.Server;
	let browser: Browser;
	beforeAll(async () => {
		server = await startTestServer();
		// The player page comes from another origin, as on a real site (CORS on our side).
		page = http.createServer((req, res) => {
			if (req.url === '/hls.js') {
				res.setHeader('Content-Type', 'text/javascript');
				res.end(HLS_JS);
			} else {
				res.setHeader('Content-Type', 'text/html');
				res.end(PAGE);
			}
		});
		await new Promise<void>((r) => page.listen(0, '127.0.0.1', r));
		browser = await chromium.launch({
			executablePath: '/usr/bin/chromium',
			headless: true,
			args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
		});
	});
	afterAll(async () => {
		await browser?.close();
		await new Promise((r) => page?.close(r));
		await server?.close();
		await stopAllFfmpeg();
	});

	it('plays the stream in low-latency mode: pictures at 640x360, parts and blocking reloads in use', async () => {
		const pub = publishFromFfmpeg(server.registry, 'browser', { duration: 40 });
		const m3u8 = `${baseUrl(server)}/hls/browser/index.m3u8`;
		await eventually(async () => (await fetch(m3u8)).ok, 15_000);
		const tab = await browser.newPage();
		await tab.goto(`http://127.0.0.1:${(page.address() as AddressInfo).port}/`);
		await tab.evaluate(`window.start(${JSON.stringify(m3u8)})`);
		const playing = await eventually(
			async () => {
				const s = await tab.evaluate<Snapshot>('window.snapshot()');
				if (s.fatal) throw new Error(`hls.js fatal error: ${s.fatal}`);
				return s.t > 3 ? s : null;
			},
			30_000,
			200,
		);
		expect(playing.width).toBe(640);
		expect(playing.height).toBe(360);
		expect(playing.lowLatency).toBe(true);
		expect(playing.canBlockReload).toBe(true);
		expect(playing.parts).toBeGreaterThan(0);
		expect(playing.fatal).toBeNull();
		// The picture on screen is a little behind the publisher (PART-HOLD-BACK and a part or two),
		// not the 3 target durations of classic HLS plus segment time.
		expect(playing.behind).not.toBeNull();
		expect(playing.behind!).toBeGreaterThan(0);
		expect(playing.behind!).toBeLessThan(5_000);
		await tab.close();
		await pub.stop();
	});
});
