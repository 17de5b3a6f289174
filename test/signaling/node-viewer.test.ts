import { afterEach, describe, expect, it } from 'vitest';
import { NodeViewer } from '../../client/node/index.js';
import type { Server } from '../../server/server.js';
import { stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { baseUrl, childPids, eventually, isAlive, startTestServer } from '../helpers/server.js';
import { publishRtp, workerOfTransport } from './helpers.js';

describe('Node viewer end to end', () => {
	let server: Server | null = null;
	const viewers: NodeViewer[] = [];
	const view = async (stream: string, decode = false): Promise<NodeViewer> => {
		const v = await NodeViewer.create({ server: baseUrl(server!), stream, decode, iceAddress: '127.0.0.1' });
		viewers.push(v);
		return v;
	};
	afterEach(async () => {
		await Promise.all(viewers.splice(0).map((v) => v.close()));
		await server?.close();
		server = null;
		await stopAllFfmpeg();
	});

	it('decodes video at the published size and Opus audio, the first picture within 3 s of join', async () => {
		server = await startTestServer();
		const pub = await publishRtp(server, 'e2e1', { width: 640, height: 360, fps: 25 });
		// Time to first frame is the viewer's, not the encoder's start-up.
		await pub.flowing();
		const viewer = await view('e2e1', true);
		await viewer.until((v) => (v.decoded?.videoFrames ?? 0) >= 10 && (v.decoded?.audioFrames ?? 0) >= 10, 15_000);
		const d = viewer.decoded!;
		expect(d.width).toBe(640);
		expect(d.height).toBe(360);
		expect(d.sampleRate).toBe(48000);
		expect(d.channels).toBe(2);
		expect(d.audioSamples).toBeGreaterThan(0);
		expect(d.errors, d.lastErrors.join('\n')).toBe(0);
		expect(viewer.video.keyframes).toBeGreaterThanOrEqual(1);
		expect(viewer.timeToFirstFrameMs).not.toBeNull();
		console.log(`node viewer: first keyframe ${viewer.timeToFirstKeyframeMs?.toFixed(0)} ms, first decoded picture ${viewer.timeToFirstFrameMs?.toFixed(0)} ms after join`);
		expect(viewer.timeToFirstFrameMs!).toBeLessThan(3000);
		// The core lists the viewer for the admin API and webhooks.
		expect(server.registry.get('e2e1')!.viewerList()).toMatchObject([{ id: viewer.id, path: 'webrtc', remoteAddress: '127.0.0.1' }]);
		await viewer.close();
		await eventually(() => server!.registry.get('e2e1')!.viewers === 0, 5_000);
		await pub.stop();
	});

	it('spreads two viewers of one stream over two workers, both receiving', async () => {
		server = await startTestServer({ rtc: { workers: 2 } });
		const pub = await publishRtp(server, 'spread', { width: 320, height: 180 });
		const a = await view('spread');
		const b = await view('spread');
		await a.until((v) => v.video.keyframes >= 1 && v.audio.packets > 20, 15_000);
		await b.until((v) => v.video.keyframes >= 1 && v.audio.packets > 20, 15_000);
		const wa = await workerOfTransport(server, a.transportId!);
		const wb = await workerOfTransport(server, b.transportId!);
		expect(wa).not.toBeNull();
		expect(wb).not.toBeNull();
		expect(new Set([wa, wb]).size).toBe(2);
		// What the signaling service believes matches the workers' own dumps.
		const sessions = server.signaling!.sessions();
		expect(sessions.find((s) => s.id === a.id)?.transports[0]?.worker).toBe(wa);
		expect(sessions.find((s) => s.id === b.id)?.transports[0]?.worker).toBe(wb);
		for (const s of sessions) expect(s.transports[0]).toMatchObject({ iceState: expect.stringMatching(/connected|completed/), dtlsState: 'connected' });
		// leastLoaded() sees on each worker the stream's router, one viewer and its transport.
		expect(server.pool.slots.map((s) => s.load).sort()).toEqual([3, 3]);
		await pub.stop();
	});

	it('gets media again within 2 s of a restart and of a takeover, on the same transport, without rejoining', async () => {
		server = await startTestServer();
		const first = await publishRtp(server, 'again', { width: 320, height: 180 });
		const viewer = await view('again');
		const offline: string[] = [];
		viewer.on('offline', (reason) => offline.push(reason));
		await viewer.until((v) => v.video.keyframes >= 1, 15_000);
		const transportId = viewer.transportId;
		const socketId = viewer.id;

		await first.stop('encoder restarting');
		await viewer.until(() => offline.length === 1, 5_000);
		expect(offline[0]).toBe('encoder restarting');
		const ssrc1 = viewer.video.ssrc;
		const k1 = viewer.video.keyframes;
		const second = await publishRtp(server, 'again', { width: 320, height: 180 });
		const t1 = performance.now();
		await viewer.until((v) => v.video.ssrc !== ssrc1 && v.video.keyframes > k1 && v.audio.ssrc !== null, 5_000);
		const restartMs = performance.now() - t1;

		const ssrc2 = viewer.video.ssrc;
		const k2 = viewer.video.keyframes;
		const third = await publishRtp(server, 'again', { width: 320, height: 180 });
		const t2 = performance.now();
		await viewer.until((v) => v.video.ssrc !== ssrc2 && v.video.keyframes > k2, 5_000);
		const takeoverMs = performance.now() - t2;
		expect(offline[1]).toMatch(/taken over/);

		console.log(`node viewer: media again ${restartMs.toFixed(0)} ms after a restart, ${takeoverMs.toFixed(0)} ms after a takeover`);
		expect(restartMs).toBeLessThan(2000);
		expect(takeoverMs).toBeLessThan(2000);
		expect(viewer.transportId).toBe(transportId);
		expect(viewer.id).toBe(socketId);
		expect(viewer.consumeRounds).toBe(3);
		expect(server.signaling!.sessions()).toHaveLength(1);
		expect(server.signaling!.sessions()[0]!.transports).toHaveLength(1);
		await second.stop();
		await third.stop();
	});

	it('reconnects, rejoins and gets media again after the connection drops', async () => {
		server = await startTestServer();
		const pub = await publishRtp(server, 'flaky', { width: 320, height: 180 });
		const viewer = await view('flaky');
		await viewer.until((v) => v.video.keyframes >= 1, 15_000);
		const firstId = viewer.id!;
		const reconnecting = new Promise<string>((resolve) => viewer.once('reconnecting', resolve));
		// Drop the underlying connection (not a kick): the client must come back on its own.
		server.signaling!.io.sockets.sockets.get(firstId)?.conn.close();
		expect(await reconnecting).toMatch(/transport/);
		const k = viewer.video.keyframes;
		await viewer.until((v) => v.id !== undefined && v.id !== firstId && v.video.keyframes > k, 15_000);
		// The old session is gone, the new one is the only one.
		await eventually(() => server!.signaling!.sessions().length === 1, 5_000);
		expect(server.signaling!.sessions()[0]!.id).toBe(viewer.id);
		expect(server.registry.get('flaky')!.viewers).toBe(1);
		await pub.stop();
	});

	it('moves viewers of a dead worker to a live one', async () => {
		server = await startTestServer({ rtc: { workers: 2 } });
		const pub = await publishRtp(server, 'phoenix', { width: 320, height: 180 });
		const origin = (await server.routers.origin('phoenix')).slot.index;
		const a = await view('phoenix');
		const b = await view('phoenix');
		await a.until((v) => v.video.keyframes >= 1, 15_000);
		await b.until((v) => v.video.keyframes >= 1, 15_000);
		const onOther = [a, b].find((v) => server!.signaling!.sessions().find((s) => s.id === v.id)?.worker !== origin)!;
		expect(onOther).toBeDefined();
		const victim = server.pool.slots.find((s) => s.index !== origin)!;
		const pid = victim.worker.pid;
		expect(childPids()).toContain(pid);
		const oldTransport = onOther.transportId;
		const k = onOther.video.keyframes;
		process.kill(pid, 'SIGKILL');
		await eventually(() => !isAlive(pid), 5_000);
		// A fresh transport on a live worker, media flowing again.
		await onOther.until((v) => v.transportId !== null && v.transportId !== oldTransport && v.video.keyframes > k, 15_000);
		expect(await workerOfTransport(server, onOther.transportId!)).not.toBe(victim.index);
		expect(onOther.id).toBe(server.signaling!.sessions().find((s) => s.id === onOther.id)?.id);
		await pub.stop();
	});
});
