import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { Server } from '../../server/server.js';
import { runFfmpeg, stopAllFfmpeg, testSourceArgs } from '../helpers/ffmpeg.js';
import type { RunningFfmpeg } from '../helpers/ffmpeg.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { launchChromium } from '../signaling/browser.js';

/** Screenshots land here as test artifacts (git-ignored). */
const ARTIFACTS = path.resolve(import.meta.dirname, '../../test-results/player');

interface PlayerState {
	path: 'connecting' | 'webrtc' | 'hls';
	reason: string | null;
	state: string;
	framesPresented: number;
}

const playerState = (page: Page): Promise<PlayerState | undefined> =>
	page.evaluate(() => (globalThis as unknown as { subsecondPlayer?: PlayerState }).subsecondPlayer);

/** Waits until the page has presented `n` more frames than it had. */
async function framesKeepComing(page: Page, n = 20, timeoutMs = 20_000): Promise<number> {
	const start = (await playerState(page))?.framesPresented ?? 0;
	return eventually(async () => {
		const s = await playerState(page);
		return s && s.framesPresented >= start + n ? s.framesPresented : 0;
	}, timeoutMs);
}

describe('web player in Chromium', () => {
	let server: Server;
	let browser: Browser;
	let publisher: RunningFfmpeg | null = null;

	const publish = (name: string): RunningFfmpeg => {
		const url = `rtmp://127.0.0.1:${server.rtmp!.port}/live/${name}`;
		// Baseline: what Debian's Chromium receives over WebRTC without transcoding.
		publisher = runFfmpeg([...testSourceArgs({ width: 640, height: 360, fps: 25, gop: 25 }), '-f', 'flv', url]);
		return publisher;
	};

	beforeAll(async () => {
		fs.mkdirSync(ARTIFACTS, { recursive: true });
		server = await startTestServer();
		browser = await launchChromium();
	});

	afterEach(async () => {
		await publisher?.stop();
		publisher = null;
		await stopAllFfmpeg();
	});

	afterAll(async () => {
		await browser?.close();
		await server?.close();
	});

	async function live(name: string): Promise<void> {
		await eventually(async () => (await fetch(`${baseUrl(server)}/api/streams/${name}`)).ok, 15_000);
	}

	it('plays over WebRTC and says so', async () => {
		publish('pw1');
		await live('pw1');
		const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
		await page.goto(`${baseUrl(server)}/watch/pw1?stats`);
		await framesKeepComing(page);
		const s = await playerState(page);
		expect(s?.path).toBe('webrtc');
		expect(s?.reason).toBeNull();
		expect(await page.textContent('#path')).toContain('WebRTC');
		const size = await page.locator('video').evaluate((v: { videoWidth: number; videoHeight: number }) => [v.videoWidth, v.videoHeight]);
		expect(size).toEqual([640, 360]);
		// The stats overlay fills in from the receiver's reports.
		await eventually(async () => (await page.textContent('[data-stat="resolution"]'))?.includes('640×360'), 10_000);
		await framesKeepComing(page, 10);
		await page.screenshot({ path: path.join(ARTIFACTS, 'desktop-webrtc.png') });
		await page.close();
	});

	it('plays over HLS with ?mode=hls', async () => {
		publish('pw2');
		await live('pw2');
		const page = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
		await page.goto(`${baseUrl(server)}/watch/pw2?mode=hls&stats`);
		await framesKeepComing(page, 20, 30_000);
		const s = await playerState(page);
		expect(s?.path).toBe('hls');
		expect(s?.reason).toContain('?mode=hls');
		expect(await page.textContent('#path')).toContain('HLS');
		await page.screenshot({ path: path.join(ARTIFACTS, 'phone-hls.png') });
		await page.close();
	});

	it('falls back to HLS by itself when WebRTC is impossible, and says why', async () => {
		publish('pw3');
		await live('pw3');
		const page = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
		await page.addInitScript(() => {
			// A browser without WebRTC, or one where an extension or policy removed it.
			delete (globalThis as unknown as { RTCPeerConnection?: unknown }).RTCPeerConnection;
		});
		await page.goto(`${baseUrl(server)}/watch/pw3`);
		await framesKeepComing(page, 20, 30_000);
		const s = await playerState(page);
		expect(s?.path).toBe('hls');
		expect(s?.reason).toMatch(/fell back/);
		expect(await page.textContent('#path')).toMatch(/HLS — fell back: .*WebRTC/);
		await page.close();
	});

	it('lists the live stream on / and drops it when it ends', async () => {
		const ff = publish('pw4');
		await live('pw4');
		const page = await browser.newPage();
		await page.goto(`${baseUrl(server)}/`);
		await page.waitForSelector('li[data-stream="pw4"]', { timeout: 15_000 });
		expect(await page.textContent('li[data-stream="pw4"]')).toContain('640×360');
		await page.click('li[data-stream="pw4"] a');
		await page.waitForURL(/\/watch\/pw4$/);
		await page.goBack();
		await page.waitForSelector('li[data-stream="pw4"]');
		await ff.stop();
		await page.waitForSelector('li[data-stream="pw4"]', { state: 'detached', timeout: 10_000 });
		expect(await page.isVisible('#empty')).toBe(true);
		await page.close();
	});

	it('waits for an offline stream and starts when it goes live, and resumes after a publisher restart', async () => {
		const page = await browser.newPage();
		await page.goto(`${baseUrl(server)}/watch/pw5`);
		await eventually(async () => (await playerState(page))?.state === 'waiting', 10_000);
		expect(await page.textContent('#message')).toMatch(/Waiting/);
		const first = publish('pw5');
		await framesKeepComing(page, 10, 30_000);
		expect((await playerState(page))?.path).toBe('webrtc');
		await first.stop();
		await eventually(async () => (await page.textContent('#message'))?.includes('offline'), 10_000);
		publish('pw5');
		await framesKeepComing(page, 10, 30_000);
		expect((await playerState(page))?.path).toBe('webrtc');
		await page.close();
	});

	it('keeps playing over WebRTC after the network drops for a while', async () => {
		publish('pw7');
		await live('pw7');
		const context = await browser.newContext();
		const page = await context.newPage();
		await page.goto(`${baseUrl(server)}/watch/pw7`);
		await framesKeepComing(page, 10);
		// The signaling connection drops with the network; media resumes after it.
		await context.setOffline(true);
		await eventually(async () => (await page.textContent('#path'))?.includes('reconnecting'), 15_000);
		await new Promise((r) => setTimeout(r, 1000));
		await context.setOffline(false);
		await framesKeepComing(page, 20, 30_000);
		expect((await playerState(page))?.path).toBe('webrtc');
		expect(await page.textContent('#path')).toBe('WebRTC');
		await context.close();
	});

	it('falls back to HLS when no WebRTC frame arrives (media port unreachable)', async () => {
		// A server that announces an address no browser can reach: ICE never completes.
		const unreachable = await startTestServer({ rtc: { announcedIp: '198.51.100.1' } });
		try {
			const url = `rtmp://127.0.0.1:${unreachable.rtmp!.port}/live/pw8`;
			const ff = runFfmpeg([...testSourceArgs({ width: 640, height: 360, fps: 25, gop: 25 }), '-f', 'flv', url]);
			await eventually(async () => (await fetch(`${baseUrl(unreachable)}/api/streams/pw8`)).ok, 15_000);
			const page = await browser.newPage();
			await page.goto(`${baseUrl(unreachable)}/watch/pw8`);
			await eventually(async () => (await playerState(page))?.path === 'hls', 20_000);
			expect((await playerState(page))?.reason).toMatch(/fell back: (no WebRTC frame|the WebRTC media connection failed)/);
			await framesKeepComing(page, 20, 30_000);
			await page.close();
			await ff.stop();
		} finally {
			await unreachable.close();
		}
	});

	it('lays out for a phone in landscape and for a desktop', async () => {
		publish('pw6');
		await live('pw6');
		const shots: [string, { width: number; height: number }, boolean][] = [
			['desktop', { width: 1280, height: 800 }, false],
			['phone-portrait', { width: 390, height: 844 }, true],
			['phone-landscape', { width: 844, height: 390 }, true],
		];
		for (const [label, viewport, isMobile] of shots) {
			const page = await browser.newPage({ viewport, isMobile, hasTouch: isMobile });
			await page.goto(`${baseUrl(server)}/watch/pw6?stats`);
			await framesKeepComing(page, 15);
			const box = await page.locator('.player').boundingBox();
			// The video fills the width, and never overflows the viewport.
			expect(box!.width).toBeGreaterThan(viewport.width * 0.9);
			expect(box!.height).toBeLessThanOrEqual(viewport.height + 1);
			expect(await page.isVisible('#unmute')).toBe(true);
			// Screenshot once the overlay has a full second of receive stats.
			await eventually(async () => /kbit/.test((await page.textContent('[data-stat="bitrate"]')) ?? ''), 10_000);
			await page.screenshot({ path: path.join(ARTIFACTS, `${label}.png`) });
			await page.close();
		}
	});
});
