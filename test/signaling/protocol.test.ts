import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NodeViewer, NODE_RTP_CAPABILITIES } from '../../client/node/index.js';
import { ERROR_CODES } from '../../client/shared/protocol.js';
import type { RtpCapabilities } from '../../client/shared/protocol.js';
import type { Server } from '../../server/server.js';
import { stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { publishRtp, rawClient } from './helpers.js';
import type { RawClient, RtpPublisher, Wire } from './helpers.js';

const FAKE_DTLS = {
	role: 'client',
	fingerprints: [{ algorithm: 'sha-256', value: Array.from({ length: 32 }, () => 'AB').join(':') }],
};

/** A client that can receive only these codecs. */
function caps(...codecs: NonNullable<RtpCapabilities['codecs']>): RtpCapabilities {
	return { codecs, headerExtensions: [] };
}
const OPUS = NODE_RTP_CAPABILITIES.codecs!.find((c) => c.kind === 'audio')!;
const H264_HIGH = NODE_RTP_CAPABILITIES.codecs!.find((c) => c.parameters?.['profile-level-id'] === '640032')!;
const VP8 = { kind: 'video' as const, mimeType: 'video/VP8', clockRate: 90000, preferredPayloadType: 96 };

function expectError(res: Wire, code: string): void {
	expect(res, JSON.stringify(res)).toMatchObject({ ok: false, error: { code } });
	expect(typeof res.error.message).toBe('string');
	expect(res.error.message.length).toBeGreaterThan(0);
	expect(res.error.message.length).toBeLessThan(2000);
}

describe('signaling protocol: bad input and wrong order', () => {
	let server: Server;
	let pub: RtpPublisher;
	// A real viewer that must keep receiving while the others misbehave.
	let witness: NodeViewer;
	const clients: RawClient[] = [];
	const client = async (): Promise<RawClient> => {
		const c = await rawClient(server);
		clients.push(c);
		return c;
	};

	beforeAll(async () => {
		server = await startTestServer({ signaling: { maxRequestsPerSecond: 1000 } });
		pub = await publishRtp(server, 'proto', { width: 320, height: 180, fps: 25 });
		witness = await NodeViewer.create({ server: baseUrl(server), stream: 'proto', iceAddress: '127.0.0.1' });
		await witness.until((v) => v.video.keyframes >= 1 && v.audio.packets > 10, 15_000);
	});
	afterEach(() => {
		for (const c of clients.splice(0)) c.close();
	});
	afterAll(async () => {
		// The witness kept receiving through every test of this file.
		const before = witness.video.packets;
		await witness.until((v) => v.video.packets > before + 20, 10_000);
		await witness.close();
		await pub.stop();
		await server.close();
		await stopAllFfmpeg();
	});

	it('refuses malformed join payloads with bad_request', async () => {
		const c = await client();
		const bad: unknown[] = [
			42,
			'proto',
			[{ stream: 'proto' }],
			null,
			true,
			{},
			{ stream: 42 },
			{ stream: null },
			{ stream: '' },
			{ stream: 'x'.repeat(60_000) },
			{ stream: '../../etc/passwd' },
			{ stream: 'proto', token: 123 },
			{ stream: 'proto', token: 'y'.repeat(20_000) },
			{ stream: 'proto', extra: 'z'.repeat(30_000) },
			{ stream: { $gt: '' } },
		];
		for (const payload of bad) expectError(await c.req('join', payload), 'bad_request');
		const msg = (await c.req('join', { stream: 'proto', strem: 'x' })).error.message as string;
		expect(msg).toMatch(/strem/);
		// Nothing stuck: the same connection can still join properly.
		expect(await c.req('join', { stream: 'proto' })).toMatchObject({ ok: true, live: true });
	});

	it('answers every other request with bad_request for malformed payloads', async () => {
		const c = await client();
		expect((await c.req('join', { stream: 'proto' })).ok).toBe(true);
		const t = await c.req('createTransport', {});
		expect(t.ok).toBe(true);
		const cases: [string, unknown][] = [
			['createTransport', { udp: false }],
			['createTransport', 'x'],
			['connectTransport', {}],
			['connectTransport', { transportId: t.id }],
			['connectTransport', { transportId: t.id, dtlsParameters: 'x' }],
			['connectTransport', { transportId: t.id, dtlsParameters: { fingerprints: [] } }],
			['connectTransport', { transportId: t.id, dtlsParameters: { fingerprints: [{ algorithm: 'md5', value: 'AB' }] } }],
			['connectTransport', { transportId: t.id, dtlsParameters: { fingerprints: [{ algorithm: 'sha-256', value: '<script>' }] } }],
			['connectTransport', { transportId: 7, dtlsParameters: FAKE_DTLS }],
			['consume', { transportId: t.id }],
			['consume', { transportId: t.id, rtpCapabilities: { codecs: 'all' } }],
			['consume', { transportId: t.id, rtpCapabilities: { codecs: [{ kind: 'smell', mimeType: 'x/y', clockRate: 1 }] } }],
			['consume', { transportId: t.id, rtpCapabilities: { codecs: Array.from({ length: 500 }, () => OPUS) } }],
			['consume', { transportId: t.id, rtpCapabilities: { codecs: [{ ...OPUS, clockRate: -1 }] } }],
			['resume', {}],
			['resume', { consumerId: ['a'] }],
			['leave', { now: true }],
			['leave', 5],
		];
		for (const [name, payload] of cases) expectError(await c.req(name, payload), 'bad_request');
	});

	it('reports requests without an acknowledgement, unknown requests and extra arguments', async () => {
		const c = await client();
		c.socket.emit('join', { stream: 'proto' });
		c.socket.emit('join', { stream: 'proto' }, 'not a function');
		await eventually(() => c.events('requestError').length >= 2, 5_000);
		for (const ev of c.events('requestError')) expect(ev).toMatchObject({ request: 'join', error: { code: 'bad_request' } });
		// Those were ignored: this connection has not joined.
		expectError(await c.req('createTransport', {}), 'invalid_state');
		expectError(await c.req('subscribe', { stream: 'proto' }), 'bad_request');
		c.socket.emit('hack');
		await eventually(() => c.events('requestError').some((e) => e.request === 'hack'), 5_000);
		const multi = await c.socket.timeout(5000).emitWithAck('join', { stream: 'proto' }, { second: true });
		expectError(multi, 'bad_request');
	});

	it('refuses requests in the wrong order with invalid_state, unknown ids with not_found', async () => {
		const c = await client();
		// Before join.
		expectError(await c.req('createTransport', {}), 'invalid_state');
		expectError(await c.req('connectTransport', { transportId: 'x', dtlsParameters: FAKE_DTLS }), 'invalid_state');
		expectError(await c.req('consume', { transportId: 'x', rtpCapabilities: NODE_RTP_CAPABILITIES }), 'invalid_state');
		expectError(await c.req('resume', { consumerId: 'x' }), 'invalid_state');
		expect(await c.req('leave', {})).toEqual({ ok: true });

		expect((await c.req('join', { stream: 'proto' })).ok).toBe(true);
		expectError(await c.req('join', { stream: 'proto' }), 'invalid_state');
		expectError(await c.req('join', { stream: 'other' }), 'invalid_state');
		// Connect and consume before any transport exists.
		expectError(await c.req('connectTransport', { transportId: 'x', dtlsParameters: FAKE_DTLS }), 'invalid_state');
		expectError(await c.req('consume', { transportId: 'x', rtpCapabilities: NODE_RTP_CAPABILITIES }), 'invalid_state');
		const t = await c.req('createTransport', {});
		expect(t).toMatchObject({ ok: true, iceParameters: { iceLite: true } });
		expect((t.iceCandidates as { protocol: string }[]).map((x) => x.protocol).sort()).toEqual(['tcp', 'udp']);
		expect(t.iceCandidates[0].address).toBe(t.iceCandidates[0].ip);
		expect(t.dtlsParameters.fingerprints.length).toBeGreaterThan(0);
		// Unknown ids.
		expectError(await c.req('connectTransport', { transportId: 'nope', dtlsParameters: FAKE_DTLS }), 'not_found');
		expectError(await c.req('consume', { transportId: 'nope', rtpCapabilities: NODE_RTP_CAPABILITIES }), 'not_found');
		// Resume before consume.
		expectError(await c.req('resume', { consumerId: 'nope' }), 'invalid_state');
		expect(await c.req('connectTransport', { transportId: t.id, dtlsParameters: FAKE_DTLS })).toEqual({ ok: true });
		expectError(await c.req('connectTransport', { transportId: t.id, dtlsParameters: FAKE_DTLS }), 'invalid_state');
		const consumed = await c.req('consume', { transportId: t.id, rtpCapabilities: NODE_RTP_CAPABILITIES });
		expect(consumed.ok).toBe(true);
		expect((consumed.consumers as { kind: string }[]).map((x) => x.kind).sort()).toEqual(['audio', 'video']);
		for (const x of consumed.consumers) expect(x).toMatchObject({ paused: true, rtpParameters: { codecs: expect.any(Array) } });
		// Consuming again is harmless: nothing new to consume.
		expect(await c.req('consume', { transportId: t.id, rtpCapabilities: NODE_RTP_CAPABILITIES })).toEqual({ ok: true, consumers: [] });
		expectError(await c.req('resume', { consumerId: 'nope' }), 'not_found');
		expect(await c.req('resume', { consumerId: consumed.consumers[0].id })).toEqual({ ok: true });
		expect(await c.req('leave', {})).toEqual({ ok: true });
		// After leave everything is gone.
		expectError(await c.req('consume', { transportId: t.id, rtpCapabilities: NODE_RTP_CAPABILITIES }), 'invalid_state');
		expectError(await c.req('resume', { consumerId: consumed.consumers[0].id }), 'invalid_state');
	});

	it('says which codec a client lacks, and serves the part it can take', async () => {
		const c = await client();
		await c.req('join', { stream: 'proto' });
		const t = await c.req('createTransport', {});
		const none = await c.req('consume', { transportId: t.id, rtpCapabilities: caps(VP8) });
		expectError(none, 'unsupported');
		expect(none.error.message).toMatch(/H\.264/);
		expect(none.error.message).toMatch(/opus/i);
		const highOnly = await c.req('consume', { transportId: t.id, rtpCapabilities: caps(H264_HIGH) });
		expectError(highOnly, 'unsupported');
		expect(highOnly.error.message).toMatch(/Constrained Baseline/);
		expect(highOnly.error.message).toMatch(/640032 \(High\)/);
		const audioOnly = await c.req('consume', { transportId: t.id, rtpCapabilities: caps(OPUS) });
		expect(audioOnly.ok).toBe(true);
		expect((audioOnly.consumers as { kind: string }[]).map((x) => x.kind)).toEqual(['audio']);
	});

	it('bounds transports per connection', async () => {
		const c = await client();
		await c.req('join', { stream: 'proto' });
		for (let i = 0; i < 4; i++) expect((await c.req('createTransport', {})).ok).toBe(true);
		expectError(await c.req('createTransport', {}), 'limit_exceeded');
		expect(server.signaling?.session(c.socket.id!)?.info().transports).toHaveLength(4);
	});

	it('answers a joined offline stream with live: false and refuses to consume it', async () => {
		const c = await client();
		const j = await c.req('join', { stream: 'nobody-here' });
		expect(j).toMatchObject({ ok: true, live: false, stream: 'nobody-here', iceServers: [] });
		expect(j.routerRtpCapabilities.codecs.length).toBeGreaterThan(0);
		const t = await c.req('createTransport', {});
		expectError(await c.req('consume', { transportId: t.id, rtpCapabilities: NODE_RTP_CAPABILITIES }), 'invalid_state');
	});

	it('closes a connection that sends an oversized message and keeps serving the rest', async () => {
		const c = await client();
		const other = await client();
		const closed = new Promise<string>((resolve) => c.socket.once('disconnect', (reason) => resolve(reason)));
		c.socket.emit('join', { stream: 'proto', token: 'q'.repeat(200_000) }, () => undefined);
		expect(await closed).toMatch(/transport/);
		expect(await other.req('join', { stream: 'proto' })).toMatchObject({ ok: true });
	});

	it('tells a kicked viewer and drops its connection', async () => {
		const c = await client();
		await c.req('join', { stream: 'proto' });
		const stream = server.registry.get('proto')!;
		const me = stream.viewerList().find((v) => v.id === c.socket.id)!;
		expect(me).toMatchObject({ path: 'webrtc', remoteAddress: '127.0.0.1' });
		const gone = new Promise<string>((resolve) => c.socket.once('disconnect', (reason) => resolve(reason)));
		me.disconnect?.('kicked by test');
		expect(await gone).toBe('io server disconnect');
		expect(c.events('kicked')).toEqual([{ reason: 'kicked by test' }]);
		expect(stream.viewerList().some((v) => v.id === c.socket.id)).toBe(false);
	});

	it('fuzz: random payloads always get a well-formed answer', async () => {
		const c = await client();
		let seed = 12345;
		const rand = (): number => {
			seed = (seed * 1103515245 + 12345) & 0x7fffffff;
			return seed / 0x7fffffff;
		};
		const value = (depth: number): unknown => {
			const r = rand();
			if (depth > 3 || r < 0.15) return null;
			if (r < 0.3) return Math.floor(rand() * 1e6) - 5e5;
			if (r < 0.45) return 'x'.repeat(Math.floor(rand() * 100));
			if (r < 0.55) return rand() < 0.5;
			if (r < 0.7) return Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1));
			const keys = ['stream', 'token', 'transportId', 'dtlsParameters', 'rtpCapabilities', 'consumerId', 'codecs', 'fingerprints', 'kind', 'mimeType', 'clockRate', 'role', 'foo'];
			const o: Record<string, unknown> = {};
			for (let i = Math.floor(rand() * 4); i > 0; i--) o[keys[Math.floor(rand() * keys.length)]!] = value(depth + 1);
			if (rand() < 0.3) o.stream = 'proto';
			return o;
		};
		const names = ['join', 'createTransport', 'connectTransport', 'consume', 'resume', 'leave'];
		for (let i = 0; i < 400; i++) {
			const res = await c.req(names[Math.floor(rand() * names.length)]!, value(0));
			if (res.ok === true) continue;
			expect(res.ok, JSON.stringify(res)).toBe(false);
			expect(ERROR_CODES).toContain(res.error.code);
			expect(res.error.code).not.toBe('internal');
		}
		expect(c.socket.connected).toBe(true);
	});
});

describe('signaling limits', () => {
	let server: Server | null = null;
	let pub: RtpPublisher | null = null;
	const clients: RawClient[] = [];
	afterEach(async () => {
		for (const c of clients.splice(0)) c.close();
		await pub?.stop();
		pub = null;
		await server?.close();
		server = null;
		await stopAllFfmpeg();
	});

	it('rate-limits a flooding connection and serves a polite one', async () => {
		server = await startTestServer({ signaling: { maxRequestsPerSecond: 20 } });
		const flood = await rawClient(server);
		const polite = await rawClient(server);
		clients.push(flood, polite);
		// One after the other: a burst of twice the rate passes, then the bucket
		// refills at the rate, so most of a quick run of 120 is refused.
		const started = Date.now();
		const answers: Wire[] = [];
		for (let i = 0; i < 120; i++) answers.push(await flood.req('leave', {}));
		const seconds = (Date.now() - started) / 1000;
		const served = answers.filter((a) => a.ok === true).length;
		const limited = answers.filter((a) => a.ok === false && a.error.code === 'rate_limited').length;
		expect(served + limited).toBe(120);
		expect(served).toBeGreaterThanOrEqual(40);
		expect(served).toBeLessThanOrEqual(40 + Math.ceil(seconds * 20) + 1);
		// All at once: at most 16 wait for an answer, the others are refused at once.
		const burst = await Promise.all(Array.from({ length: 60 }, () => flood.req('leave', {})));
		expect(burst.every((a) => a.ok === true || a.error.code === 'rate_limited')).toBe(true);
		expect(burst.filter((a) => a.ok === true).length).toBeLessThanOrEqual(16 + 40);
		// The polite neighbour is not affected.
		expect(await polite.req('join', { stream: 'calm' })).toMatchObject({ ok: true });
		expect(server.signaling?.stats().requests.leave?.rate_limited).toBeGreaterThanOrEqual(limited);
	});

	it('closes a transport that is not connected in time and tells the client', async () => {
		server = await startTestServer({ signaling: { transportConnectTimeoutMs: 400 } });
		const c = await rawClient(server);
		clients.push(c);
		await c.req('join', { stream: 'slow' });
		const t = await c.req('createTransport', {});
		expect(t.connectTimeoutMs).toBe(400);
		await eventually(() => c.events('transportClosed').length > 0, 5_000);
		expect(c.events('transportClosed')[0]).toMatchObject({ transportId: t.id, reason: expect.stringMatching(/not connected within 400 ms/) });
		expect(server.signaling?.session(c.socket.id!)?.info().transports).toHaveLength(0);
		expectError(await c.req('connectTransport', { transportId: t.id, dtlsParameters: FAKE_DTLS }), 'invalid_state');
		// The slot's load is back to the stream's router and the (still joined) viewer.
		expect(server.pool.slots[0]!.load).toBe(2);
		await c.req('leave', {});
		expect(server.pool.slots[0]!.load).toBe(1);
	});

	it('limits viewers per stream', async () => {
		server = await startTestServer({ streams: { maxViewersPerStream: 2 } });
		const a = await rawClient(server);
		const b = await rawClient(server);
		const c = await rawClient(server);
		clients.push(a, b, c);
		expect((await a.req('join', { stream: 'small' })).ok).toBe(true);
		expect((await b.req('join', { stream: 'small' })).ok).toBe(true);
		expectError(await c.req('join', { stream: 'small' }), 'limit_exceeded');
		expect((await c.req('join', { stream: 'other' })).ok).toBe(true);
		await b.req('leave', {});
		expect(server.registry.get('small')!.viewerCounts.webrtc).toBe(1);
		expect((await c.req('leave', {})).ok).toBe(true);
		expect((await c.req('join', { stream: 'small' })).ok).toBe(true);
	});

	it('sends streamOffline and streamLive to joined viewers, consumers closing first', async () => {
		server = await startTestServer();
		const c = await rawClient(server);
		clients.push(c);
		expect(await c.req('join', { stream: 'flip' })).toMatchObject({ ok: true, live: false });
		pub = await publishRtp(server, 'flip', { audio: false });
		await eventually(() => c.events('streamLive').length === 1, 10_000);
		expect(c.events('streamLive')[0]).toEqual({ stream: 'flip' });
		const t = await c.req('createTransport', {});
		const consumed = await c.req('consume', { transportId: t.id, rtpCapabilities: NODE_RTP_CAPABILITIES });
		expect(consumed.consumers).toHaveLength(1);
		const order: string[] = [];
		c.socket.on('consumerClosed', () => order.push('consumerClosed'));
		c.socket.on('streamOffline', () => order.push('streamOffline'));
		await pub.stop('the test stopped it');
		await eventually(() => c.events('streamOffline').length === 1, 5_000);
		expect(c.events('streamOffline')[0]).toEqual({ stream: 'flip', reason: 'the test stopped it' });
		expect(c.events('consumerClosed')[0]).toMatchObject({ consumerId: consumed.consumers[0].id });
		expect(order).toEqual(['consumerClosed', 'streamOffline']);
		pub = await publishRtp(server, 'flip', { audio: false });
		await eventually(() => c.events('streamLive').length === 2, 10_000);
		// Same transport, new consumer.
		const again = await c.req('consume', { transportId: t.id, rtpCapabilities: NODE_RTP_CAPABILITIES });
		expect(again.consumers).toHaveLength(1);
		expect(again.consumers[0].id).not.toBe(consumed.consumers[0].id);
	});
});
