import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { NodeViewer } from '../../client/node/index.js';
import type { Server } from '../../server/server.js';
import { runFfmpeg, stopAllFfmpeg, testSourceArgs } from '../helpers/ffmpeg.js';
import type { RunningFfmpeg, TestSourceOptions } from '../helpers/ffmpeg.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { bundleViewerLib, launchChromium, pageState, startPageServer } from './browser.js';
import type { PageServer } from './browser.js';

// The whole path as a user runs it: ffmpeg publishes RTMP (H.264 constrained
// baseline + AAC), the RTMP server and the bridge turn it into producers,
// and viewers watch over WebRTC: the Node viewer and the browser library.
describe('RTMP to WebRTC viewers, end to end', () => {
	let server: Server | null = null;
	let browser: Browser | null = null;
	let pages: PageServer | null = null;
	let page: Page | null = null;
	const viewers: NodeViewer[] = [];

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
		await Promise.all(viewers.splice(0).map((v) => v.close()));
		await server?.close();
		server = null;
		await stopAllFfmpeg();
	});

	const publish = (name: string, o: TestSourceOptions = {}): RunningFfmpeg => {
		const rtmp = server!.info().rtmp;
		if (!rtmp) throw new Error('RTMP ingest is off');
		return runFfmpeg([...testSourceArgs({ width: 640, height: 360, fps: 25, ...o }), '-f', 'flv', `${rtmp.url}/${name}`]);
	};
	const live = (name: string): Promise<boolean> => eventually(() => server!.signaling!.isLive(name), 20_000);

	it('a Node viewer and Chromium both get the published picture size and sound', async () => {
		server = await startTestServer();
		publish('rtmp1');
		await live('rtmp1');
		const viewer = await NodeViewer.create({ server: baseUrl(server), stream: 'rtmp1', decode: true, iceAddress: '127.0.0.1' });
		viewers.push(viewer);
		await viewer.until((v) => (v.decoded?.videoFrames ?? 0) >= 10 && (v.decoded?.audioFrames ?? 0) >= 10, 15_000);
		expect(viewer.decoded).toMatchObject({ width: 640, height: 360, sampleRate: 48000, errors: 0 });
		console.log(`rtmp → node viewer: first picture ${viewer.timeToFirstFrameMs?.toFixed(0)} ms after join ${JSON.stringify(viewer.timeline)}`);
		expect(viewer.timeToFirstFrameMs!).toBeLessThan(3000);

		page = await browser!.newPage();
		await page.goto(`${pages!.url}?${new URLSearchParams({ server: baseUrl(server), stream: 'rtmp1' }).toString()}`);
		const s = await eventually(async () => {
			const st = await pageState(page!);
			if (st.error) throw new Error(st.error.message);
			return st.frames >= 25 ? st : null;
		}, 20_000);
		expect([s.width, s.height]).toEqual([640, 360]);
		console.log(`rtmp → chromium: first frame ${s.firstFrameMs?.toFixed(0)} ms after the page started watching`);
	});

	it('a connected viewer gets media again within 2 s when the encoder reconnects', async () => {
		server = await startTestServer();
		const first = publish('rtmp2', { width: 320, height: 180 });
		await live('rtmp2');
		const viewer = await NodeViewer.create({ server: baseUrl(server), stream: 'rtmp2', decode: true, iceAddress: '127.0.0.1' });
		viewers.push(viewer);
		await viewer.until((v) => (v.decoded?.videoFrames ?? 0) >= 5, 15_000);
		const offline = new Promise<string>((resolve) => viewer.once('offline', resolve));
		await first.stop();
		expect(await offline).toBeTruthy();
		const frames = viewer.decoded!.videoFrames;
		const ssrc = viewer.video.ssrc;
		publish('rtmp2', { width: 480, height: 270 });
		await live('rtmp2');
		const t0 = performance.now();
		await viewer.until((v) => v.video.ssrc !== ssrc && v.video.keyframes >= 2, 10_000);
		const againMs = performance.now() - t0;
		await viewer.until((v) => v.decoded!.videoFrames > frames + 5 && v.decoded!.width === 480, 10_000);
		console.log(`rtmp reconnect: media again ${againMs.toFixed(0)} ms after the stream was live again`);
		expect(againMs).toBeLessThan(2000);
		expect(viewer.decoded!.height).toBe(270);
		expect(server.signaling!.sessions()).toHaveLength(1);
	});
});
