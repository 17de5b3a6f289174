import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeViewer, NODE_RTP_CAPABILITIES } from '../../client/node/index.js';
import type { Server } from '../../server/server.js';
import { stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { publishRtp, rawClient, sfuCounts } from './helpers.js';
import type { RtpPublisher } from './helpers.js';

describe('join and leave cycles', () => {
	let server: Server;
	let pub: RtpPublisher;

	beforeAll(async () => {
		server = await startTestServer({ rtc: { workers: 2 }, signaling: { maxRequestsPerSecond: 1000 } });
		pub = await publishRtp(server, 'cycle', { width: 320, height: 180 });
		await pub.flowing();
	});
	afterAll(async () => {
		await pub.stop();
		await server.close();
		await stopAllFfmpeg();
	});

	it('100 cycles leave as many transports, consumers, routers and viewers as before', async () => {
		// One viewer first, so both workers have their router for the stream.
		const warm = await NodeViewer.create({ server: baseUrl(server), stream: 'cycle', iceAddress: '127.0.0.1' });
		await warm.until((v) => v.video.keyframes >= 1, 15_000);
		const warm2 = await NodeViewer.create({ server: baseUrl(server), stream: 'cycle', iceAddress: '127.0.0.1' });
		await warm2.until((v) => v.video.keyframes >= 1, 15_000);
		await warm.close();
		await warm2.close();
		await eventually(() => server.signaling!.stats().connections === 0, 10_000);

		const stream = server.registry.get('cycle')!;
		const before = await sfuCounts(server);
		const loadsBefore = server.pool.slots.map((s) => s.load);
		// The stream's router on each worker; the ingest's plain transports and the pipe between the routers.
		expect(before.routers).toBe(2);
		expect(before.transports).toBe(2 + 2);
		expect(stream.viewers).toBe(0);

		const started = Date.now();
		for (let i = 0; i < 100; i++) {
			if (i % 10 === 9) {
				// Every tenth cycle is a real viewer: ICE, DTLS and media.
				const v = await NodeViewer.create({ server: baseUrl(server), stream: 'cycle', iceAddress: '127.0.0.1' });
				await v.until((x) => x.audio.packets > 0, 10_000);
				await v.close();
				continue;
			}
			const c = await rawClient(server);
			expect((await c.req('join', { stream: 'cycle' })).ok).toBe(true);
			const t = await c.req('createTransport', {});
			const consumed = await c.req('consume', { transportId: t.id, rtpCapabilities: NODE_RTP_CAPABILITIES });
			expect(consumed.consumers).toHaveLength(2);
			for (const x of consumed.consumers) await c.req('resume', { consumerId: x.id });
			// Half leave politely, half just vanish.
			if (i % 2 === 0) expect(await c.req('leave', {})).toEqual({ ok: true });
			c.close();
		}
		const elapsed = Date.now() - started;

		await eventually(() => server.signaling!.stats().connections === 0, 10_000);
		const after = await sfuCounts(server);
		expect(after).toEqual(before);
		expect(server.pool.slots.map((s) => s.load)).toEqual(loadsBefore);
		expect(stream.viewers).toBe(0);
		expect(stream.viewerList()).toEqual([]);
		expect(server.signaling!.sessions()).toEqual([]);
		console.log(`100 join/leave cycles in ${elapsed} ms; sfu ${JSON.stringify(after)}`);
	});
});
