import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { Server } from '../../server/server.js';
import { stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { bundleViewerLib, launchChromium, pageState, startPageServer } from './browser.js';
import type { PageServer } from './browser.js';
import { publishRtp } from './helpers.js';

// The browser viewer library (client/web/lib) in Debian's Chromium, against
// the real server, with H.264 constrained baseline (Debian's Chromium does
// not receive High profile) and Opus.
describe('browser viewer library in Chromium', () => {
	let browser: Browser;
	let pages: PageServer;
	let server: Server | null = null;
	let page: Page | null = null;

	beforeAll(async () => {
		pages = await startPageServer(await bundleViewerLib());
		browser = await launchChromium();
	});
	afterAll(async () => {
		await browser?.close();
		await pages?.close();
	});
	afterEach(async () => {
		await page?.close();
		page = null;
		await server?.close();
		server = null;
		await stopAllFfmpeg();
	});

	const open = async (stream: string, token?: string): Promise<Page> => {
		page = await browser.newPage();
		const q = new URLSearchParams({ server: baseUrl(server!), stream, ...(token ? { token } : {}) });
		await page.goto(`${pages.url}?${q.toString()}`);
		return page;
	};

	it('presents frames of the published size', async () => {
		server = await startTestServer();
		const pub = await publishRtp(server, 'web1', { width: 640, height: 360, fps: 25 });
		const p = await open('web1');
		const state = await eventually(async () => {
			const s = await pageState(p);
			if (s.error) throw new Error(`watch failed: ${s.error.message}`);
			return s.frames >= 25 ? s : null;
		}, 20_000);
		expect(state.width).toBe(640);
		expect(state.height).toBe(360);
		expect(state.events.some((e) => e.ev === 'live')).toBe(true);
		// The element really plays sound and picture from the library's MediaStream.
		const tracks = await p.evaluate<string[]>(
			"document.getElementById('v').srcObject.getTracks().map((t) => t.kind + ':' + t.readyState)",
		);
		expect(tracks.sort()).toEqual(['audio:live', 'video:live']);
		// The library's stats come from the browser's own receive reports.
		const stats = await eventually(async () => {
			const s = (await pageState(p)).stats as { video: { framesDecoded?: number } | null; audio: { packetsReceived: number } | null } | null;
			return s?.video && (s.video.framesDecoded ?? 0) > 0 && s.audio && s.audio.packetsReceived > 0 ? s : null;
		}, 10_000);
		expect(stats.video?.framesDecoded).toBeGreaterThan(0);
		console.log(`browser: first frame ${state.firstFrameMs?.toFixed(0)} ms after watch() started`, JSON.stringify(state.events));
		await pub.stop();
	});

	it('keeps playing through a publisher restart and a takeover without reloading', async () => {
		server = await startTestServer();
		const first = await publishRtp(server, 'web2', { width: 640, height: 360 });
		const p = await open('web2');
		await eventually(async () => (await pageState(p)).frames >= 10, 20_000);

		await first.stop();
		await eventually(async () => (await pageState(p)).events.some((e) => e.ev === 'offline'), 5_000);
		const before = (await pageState(p)).frames;
		const second = await publishRtp(server, 'web2', { width: 480, height: 270 });
		// From the moment the server has the new publisher's media.
		await second.flowing();
		const restartAt = Date.now();
		await eventually(async () => (await pageState(p)).width === 480, 10_000, 20);
		const restartMs = Date.now() - restartAt;
		const afterRestart = await eventually(async () => {
			const s = await pageState(p);
			return s.frames > before + 5 ? s : null;
		}, 10_000);
		expect(afterRestart.height).toBe(270);

		// A second publisher takes the name over while the first is live.
		const before2 = afterRestart.frames;
		const third = await publishRtp(server, 'web2', { width: 640, height: 360 });
		await third.flowing();
		const takeoverAt = Date.now();
		await eventually(async () => (await pageState(p)).width === 640, 10_000, 20);
		const takeoverMs = Date.now() - takeoverAt;
		const afterTakeover = await eventually(async () => {
			const s = await pageState(p);
			return s.frames > before2 + 5 ? s : null;
		}, 10_000);
		expect(afterTakeover.height).toBe(360);
		const evs = afterTakeover.events.map((e) => e.ev);
		expect(evs.filter((e) => e === 'offline').length).toBeGreaterThanOrEqual(2);
		expect(evs.filter((e) => e === 'live').length).toBeGreaterThanOrEqual(3);
		expect(evs).not.toContain('reconnecting');
		expect(afterTakeover.error).toBeNull();
		// One connection all along: the viewer never rejoined.
		expect(server.signaling?.sessions()).toHaveLength(1);
		console.log(`browser: frames again ${restartMs} ms after a restart, ${takeoverMs} ms after a takeover`);
		expect(restartMs).toBeLessThan(2000);
		expect(takeoverMs).toBeLessThan(2000);

		// The connection drops (not a kick): the library reconnects, rejoins and plays on.
		const firstId = server.signaling!.sessions()[0]!.id;
		server.signaling!.io.sockets.sockets.get(firstId)?.conn.close();
		const before3 = (await pageState(p)).frames;
		const afterReconnect = await eventually(async () => {
			const s = await pageState(p);
			return s.events.some((e) => e.ev === 'reconnecting') && s.frames > before3 + 10 ? s : null;
		}, 15_000);
		expect(afterReconnect.error).toBeNull();
		await eventually(() => server!.signaling!.sessions().length === 1 && server!.signaling!.sessions()[0]!.id !== firstId, 5_000);
		await second.stop();
		await third.stop();
	});
});
