import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../server/common/emitter.js';
import type { Server } from '../../server/server.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { TestRtpSender, deleteRtp, postRtp } from './helpers.js';

describe('RTP ingest API with publish keys', () => {
	let server: Server;
	beforeAll(async () => {
		server = await startTestServer({
			rtpIngest: { listenIp: '127.0.0.1' },
			auth: { publish: { keys: { cam: 'sekret', other: 'x' } } },
		});
	});
	afterAll(async () => {
		await server.close();
	});

	it('refuses a missing or wrong key with 401 and allocates nothing', async () => {
		for (const opts of [{}, { key: 'wrong' }, { bearer: 'wrong' }, { key: 'x' }]) {
			const r = await postRtp(server, 'cam', opts);
			expect(r.status).toBe(401);
			expect(r.body.error).toMatchObject({ code: 'unauthorized' });
			expect(r.body.error!.message).toMatch(/cam/);
			expect(r.body.video).toBeUndefined();
		}
		expect(server.rtpIngest!.sessions()).toHaveLength(0);
		expect(server.registry.get('cam')?.live ?? false).toBe(false);
	});

	it('accepts the key as ?key= or as a bearer token; DELETE needs it too', async () => {
		const a = await postRtp(server, 'cam', { key: 'sekret' });
		expect(a.status).toBe(201);
		const b = await postRtp(server, 'cam', { bearer: 'sekret' });
		expect(b.status).toBe(201);
		expect(server.rtpIngest!.sessions()).toHaveLength(1);
		expect((await deleteRtp(server, 'cam')).status).toBe(401);
		expect((await deleteRtp(server, 'cam', { key: 'nope' })).status).toBe(401);
		expect(server.registry.get('cam')?.live).toBe(true);
		expect((await deleteRtp(server, 'cam', { bearer: 'sekret' })).status).toBe(204);
		expect(server.registry.get('cam')?.live).toBe(false);
		expect(server.rtpIngest!.sessions()).toHaveLength(0);
	});

	it('answers a malformed Authorization header with 400', async () => {
		const res = await fetch(`${baseUrl(server)}/api/streams/cam/rtp`, { method: 'POST', headers: { authorization: 'Basic abc' } });
		expect(res.status).toBe(400);
		expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/Bearer/);
	});
});

describe('RTP ingest API', () => {
	let server: Server;
	beforeAll(async () => {
		server = await startTestServer({
			rtpIngest: { listenIp: '127.0.0.1', startTimeoutMs: 600, idleTimeoutMs: 700 },
			streams: { maxStreams: 3 },
		});
	});
	afterEach(async () => {
		for (const s of server.rtpIngest!.sessions()) s.close('test cleanup');
		await eventually(() => server.registry.liveStreams().length === 0, 5000);
	});
	afterAll(async () => {
		await server.close();
	});

	it('answers ports, payload types, SSRCs and an SDP', async () => {
		const { status, body } = await postRtp(server, 'a1');
		expect(status).toBe(201);
		expect(body.stream).toBe('a1');
		for (const m of [body.video, body.audio]) {
			expect(m.ip).toBe('127.0.0.1');
			expect(m.port).toBeGreaterThan(0);
			expect(m.rtcpPort).toBe(m.port + 1);
			expect(m.ssrc).toBeGreaterThan(0);
			expect(m.ssrc).toBeLessThanOrEqual(0x7fffffff); // ffmpeg's -ssrc is a signed int
		}
		expect(body.video).toMatchObject({ payloadType: 96, codec: 'H264', clockRate: 90000, packetizationMode: 1 });
		expect(body.audio).toMatchObject({ payloadType: 111, codec: 'opus', clockRate: 48000, channels: 2 });
		expect(body.sdp).toContain(`m=video ${body.video.port} RTP/AVP 96`);
		expect(body.sdp).toContain(`m=audio ${body.audio.port} RTP/AVP 111`);
		expect(body.sdp).toContain('a=fmtp:96 packetization-mode=1');
		expect(body.sdp).toContain(`a=ssrc:${body.video.ssrc} `);
		// Live at once, with no media yet, like an RTMP publish before its first frame.
		const info = await (await fetch(`${baseUrl(server)}/api/streams/a1`)).json();
		expect(info).toMatchObject({ name: 'a1', live: true, video: null, audio: null });
	});

	it('answers 400 for bad names and malformed bodies, with a clear message', async () => {
		const bad = ['-x', 'a..b', 'x'.repeat(65), 'sp%20ace', 'a%2Fb'];
		for (const name of bad) {
			const r = await postRtp(server, name);
			expect(r.status, name).toBe(400);
			expect(r.body.error?.code).toBe('bad_request');
		}
		const cases: [Parameters<typeof postRtp>[2], RegExp][] = [
			[{ body: { video: { payloadType: 20 } } }, /video\.payloadType/],
			[{ body: { audio: { payloadType: 128 } } }, /audio\.payloadType/],
			[{ body: { video: { codec: 'vp8' } } }, /codec/],
			[{ body: { nonsense: true } }, /nonsense/],
			[{ body: [1, 2] }, /body/],
			[{ body: { video: { spropParameterSets: 'abc!' } } }, /base64/],
			[{ body: { video: { spropParameterSets: 'Z0LAHg==,aM4=' } } }, /SPS/],
			[{ rawBody: '{"video":', contentType: 'application/json' }, /malformed/],
			[{ rawBody: 'video=1', contentType: 'application/x-www-form-urlencoded' }, /application\/json/],
		];
		for (const [opts, msg] of cases) {
			const r = await postRtp(server, 'a2', opts);
			expect(r.status, JSON.stringify(opts)).toBe(400);
			expect(r.body.error?.message).toMatch(msg);
		}
		expect(server.rtpIngest!.sessions()).toHaveLength(0);
	});

	it('answers 404 for DELETE of a stream without an RTP publisher', async () => {
		const r = await deleteRtp(server, 'nobody');
		expect(r.status).toBe(404);
		expect(r.body).toMatchObject({ error: { code: 'not_found' } });
		// Live over another protocol is still no RTP publisher.
		const pub = server.registry.publish('rtmpcam', { protocol: 'rtmp', remoteAddress: '127.0.0.1', kick: () => undefined });
		expect((await deleteRtp(server, 'rtmpcam')).status).toBe(404);
		expect(pub.ended).toBe(false);
		// ... and a POST takes it over.
		expect((await postRtp(server, 'rtmpcam')).status).toBe(201);
		expect(pub.ended).toBe(true);
	});

	it('takes the payload types a sender asks for and drops others, counting them', async () => {
		const { status, body } = await postRtp(server, 'a3', { body: { video: { payloadType: 102 }, audio: { payloadType: 100 } } });
		expect(status).toBe(201);
		expect(body.video.payloadType).toBe(102);
		expect(body.audio.payloadType).toBe(100);
		expect(body.sdp).toContain('a=rtpmap:102 H264/90000');
		const wrong = await new TestRtpSender(111, 48000).open(body.audio.port);
		const right = await new TestRtpSender(100, 48000).open(body.audio.port);
		try {
			const pub = server.registry.get('a3')!.publication!;
			await wrong.send(Buffer.from([0xfc, 1, 2]), 0, true);
			await right.send(Buffer.from([0xfc, 1, 2]), 0, true);
			await waitFor(pub, 'audio', 5000);
			const stats = server.rtpIngest!.session('a3')!.stats();
			expect(stats.audio.wrongPayloadType).toBe(1);
			expect(stats.audio.packets).toBe(1);
			// ... and Prometheus sees the session and the drop.
			const metrics = await (await fetch(`${baseUrl(server)}/metrics`)).text();
			expect(metrics).toMatch(/^subsecond_ingest_connections\{protocol="rtp"\} 1$/m);
			expect(metrics).toMatch(/^subsecond_ingest_errors_total\{protocol="rtp",reason="wrongPayloadType"\} 1$/m);
		} finally {
			wrong.close();
			right.close();
		}
	});

	it('refuses a stream over the limit with 429 and frees its ports', async () => {
		for (const n of ['l1', 'l2', 'l3']) expect((await postRtp(server, n)).status).toBe(201);
		const r = await postRtp(server, 'l4');
		expect(r.status).toBe(429);
		expect(r.body.error?.code).toBe('limit_exceeded');
		expect(server.rtpIngest!.sessions().map((s) => s.stream).sort()).toEqual(['l1', 'l2', 'l3']);
		// A takeover of a live name is not a new stream.
		expect((await postRtp(server, 'l2')).status).toBe(201);
	});

	it('ends a session that never receives anything', async () => {
		const { body } = await postRtp(server, 'a4');
		const pub = server.registry.get('a4')!.publication!;
		const [reason] = await waitFor(pub, 'end', 5000);
		expect(reason).toMatch(/no RTP received within 600 ms/);
		expect(server.rtpIngest!.session('a4')).toBeUndefined();
		// Its ports are closed: a sender gets nothing through.
		expect(body.video.port).toBeGreaterThan(0);
		expect(server.registry.get('a4')?.live).toBe(false);
	});

	it('ends a session whose sender went quiet, and sooner after BYE', async () => {
		const { body } = await postRtp(server, 'a5');
		const pub = server.registry.get('a5')!.publication!;
		const audio = await new TestRtpSender(111, 48000).open(body.audio.port);
		try {
			const started = Date.now();
			for (let i = 0; i < 10; i++) {
				await audio.send(Buffer.from([0xfc, i]), i * 20, true);
				await new Promise((r) => setTimeout(r, 20));
			}
			const [reason] = await waitFor(pub, 'end', 5000);
			expect(reason).toMatch(/no RTP for 700 ms/);
			expect(Date.now() - started).toBeGreaterThanOrEqual(700);
		} finally {
			audio.close();
		}
		const second = await postRtp(server, 'a6');
		const pub2 = server.registry.get('a6')!.publication!;
		const s2 = await new TestRtpSender(111, 48000).open(second.body.audio.port);
		try {
			await s2.send(Buffer.from([0xfc, 0]), 0, true);
			await waitFor(pub2, 'audio', 5000);
			const { buildBye } = await import('../../ingest/rtp/rtp.js');
			await s2.raw(buildBye([s2.ssrc]), second.body.audio.rtcpPort);
			const [reason] = await waitFor(pub2, 'end', 5000);
			expect(reason).toMatch(/BYE/);
		} finally {
			s2.close();
		}
	});
});
