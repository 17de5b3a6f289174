import { afterEach, describe, expect, it } from 'vitest';
import { NodeViewer } from '../../client/node/index.js';
import { waitFor } from '../../server/common/emitter.js';
import type { AdminStream } from '../../server/http/admin.js';
import type { Server } from '../../server/server.js';
import { stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { publishFromFfmpeg } from '../helpers/flv-publisher.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { parseMetrics, sampleValue } from './helpers.js';

const TOKEN = 'admin-token-for-tests-0123456789';
const auth = { Authorization: `Bearer ${TOKEN}` };

async function call(
	server: Server,
	method: string,
	path: string,
	opts: { headers?: Record<string, string>; body?: unknown } = {},
	// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON under test, read field by field
): Promise<{ status: number; body: any; headers: Headers }> {
	const res = await fetch(`${baseUrl(server)}${path}`, {
		method,
		headers: { ...(opts.body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...opts.headers },
		body: opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body),
	});
	const text = await res.text();
	let body: unknown = text;
	try {
		body = JSON.parse(text);
	} catch {
		// not JSON
	}
	return { status: res.status, body, headers: res.headers };
}

describe('admin API', () => {
	let server: Server | null = null;
	afterEach(async () => {
		await server?.close();
		server = null;
		await stopAllFfmpeg();
	});

	it('is off (404 everywhere) while no admin token is configured', async () => {
		server = await startTestServer();
		for (const [method, path] of [
			['GET', '/api/admin/streams'],
			['POST', '/api/admin/streams/x/kick'],
			['DELETE', '/api/admin/streams/x'],
			['DELETE', '/api/admin/viewers/v1'],
		] as const) {
			const r = await call(server, method, path, { headers: auth });
			expect(r.status, `${method} ${path}`).toBe(404);
			expect(r.body.error.code).toBe('not_found');
			expect(r.body.error.message).toMatch(/adminToken/);
		}
	});

	it('refuses requests without the token or with a wrong one (401)', async () => {
		server = await startTestServer({ auth: { adminToken: TOKEN } });
		const cases: Record<string, string>[] = [
			{},
			{ Authorization: 'Bearer wrong' },
			{ Authorization: `Bearer ${TOKEN}x` },
			{ Authorization: `Bearer ${TOKEN.slice(0, -1)}` },
			{ Authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` },
			{ Authorization: TOKEN },
			{ Authorization: 'Bearer' },
		];
		for (const headers of cases) {
			for (const [method, path] of [
				['GET', '/api/admin/streams'],
				['POST', '/api/admin/streams/x/kick'],
				['DELETE', '/api/admin/viewers/v1'],
			] as const) {
				const r = await call(server, method, path, { headers });
				expect(r.status, `${method} ${path} with ${JSON.stringify(headers)}`).toBe(401);
				expect(r.body.error.code).toBe('unauthorized');
				expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
			}
		}
		// The scheme is case-insensitive, as HTTP says.
		expect((await call(server, 'GET', '/api/admin/streams', { headers: { Authorization: `bearer ${TOKEN}` } })).status).toBe(200);
	});

	it('lists streams with the publisher address and uptime and the viewers; kicks a publisher', async () => {
		server = await startTestServer({ auth: { adminToken: TOKEN } });
		const s = server;
		const pub = publishFromFfmpeg(s.registry, 'adm1', { width: 320, height: 180 });
		await eventually(() => pub.publication.video !== null && pub.publication.stats.videoFrames > 5, 15_000);
		const stream = s.registry.get('adm1')!;
		const disconnects: string[] = [];
		const release = stream.addViewer('webrtc', {
			id: 'sock-1',
			remoteAddress: '203.0.113.9',
			disconnect: (reason) => disconnects.push(reason),
		});
		stream.addViewer('hls', { id: 'hls-1', remoteAddress: '203.0.113.10' });
		await new Promise((r) => setTimeout(r, 1100)); // uptime shows whole seconds

		const list = await call(s, 'GET', '/api/admin/streams', { headers: auth });
		expect(list.status).toBe(200);
		expect(list.headers.get('cache-control')).toBe('no-store');
		const streams = list.body as AdminStream[];
		expect(streams).toHaveLength(1);
		const one = streams[0]!;
		expect(one).toMatchObject({
			name: 'adm1',
			live: true,
			viewers: 2,
			viewerCounts: { webrtc: 1, hls: 1 },
			video: { codec: 'h264', width: 320, height: 180 },
			publisher: { protocol: 'rtmp', remoteAddress: '127.0.0.1', publication: pub.publication.id },
		});
		expect(one.publisher!.uptimeSeconds).toBeGreaterThanOrEqual(1);
		expect(Date.parse(one.publisher!.startedAt)).toBe(pub.publication.startedAt);
		expect(one.publisher!.stats.videoFrames).toBeGreaterThan(5);
		expect(one.viewerList).toEqual([
			expect.objectContaining({ id: 'sock-1', path: 'webrtc', remoteAddress: '203.0.113.9', disconnectable: true }),
			expect.objectContaining({ id: 'hls-1', path: 'hls', remoteAddress: '203.0.113.10', disconnectable: false }),
		]);
		expect(one.viewerList[0]!.connectedSeconds).toBeGreaterThanOrEqual(1);

		const single = await call(s, 'GET', '/api/admin/streams/adm1', { headers: auth });
		expect(single.body.publisher.remoteAddress).toBe('127.0.0.1');
		expect((await call(s, 'GET', '/api/admin/streams/nosuch', { headers: auth })).status).toBe(404);
		expect((await call(s, 'GET', '/api/admin/streams/..%2fetc', { headers: auth })).status).toBe(400);

		// Kick: the publication ends, its connection is closed (ffmpeg is stopped), viewers stay.
		const ended = waitFor(pub.publication, 'end', 5000);
		const kicked = await call(s, 'POST', '/api/admin/streams/adm1/kick', { headers: auth, body: { reason: 'policy violation' } });
		expect(kicked.status).toBe(200);
		expect(kicked.body).toMatchObject({ stream: 'adm1', kicked: true, publication: pub.publication.id, reason: 'policy violation' });
		expect(await ended).toEqual(['policy violation']);
		await pub.ffmpeg.exited;
		expect(stream.live).toBe(false);
		expect(stream.viewers).toBe(2);
		expect(disconnects).toEqual([]);
		// Nothing left to kick.
		const again = await call(s, 'POST', '/api/admin/streams/adm1/kick', { headers: auth });
		expect(again.status).toBe(404);
		// Offline streams with viewers are still listed, without a publisher.
		const after = (await call(s, 'GET', '/api/admin/streams', { headers: auth })).body as AdminStream[];
		expect(after[0]).toMatchObject({ name: 'adm1', live: false, publisher: null });
		release();

		const metrics = parseMetrics(await s.metrics.scrape()).samples;
		expect(sampleValue(metrics, 'subsecond_admin_actions_total', { action: 'kick' })).toBe(1);
	});

	it('disconnects a viewer, refuses HLS viewers (409) and unknown ids (404)', async () => {
		server = await startTestServer({ auth: { adminToken: TOKEN } });
		const s = server;
		const stream = s.registry.getOrCreate('adm2');
		const reasons: string[] = [];
		let release: () => void = () => undefined;
		release = stream.addViewer('webrtc', {
			id: 'sock-9',
			remoteAddress: '203.0.113.1',
			// What signaling does: end the session, which releases the viewer.
			disconnect: (reason) => {
				reasons.push(reason);
				release();
			},
		});
		stream.addViewer('hls', { id: 'hls-9', remoteAddress: '203.0.113.2' });

		const left = waitFor(s.registry, 'viewerLeave', 5000);
		const r = await call(s, 'DELETE', '/api/admin/viewers/sock-9', { headers: auth });
		expect(r.status).toBe(200);
		expect(r.body).toMatchObject({ id: 'sock-9', stream: 'adm2', path: 'webrtc', disconnected: true, reason: 'disconnected by admin' });
		expect(reasons).toEqual(['disconnected by admin']);
		const [, leaver] = await left;
		expect(leaver.id).toBe('sock-9');
		expect(stream.viewerCounts.webrtc).toBe(0);

		expect((await call(s, 'DELETE', '/api/admin/viewers/sock-9', { headers: auth })).status).toBe(404);
		const hls = await call(s, 'DELETE', '/api/admin/viewers/hls-9', { headers: auth });
		expect(hls.status).toBe(409);
		expect(hls.body.error.code).toBe('conflict');
		expect(hls.body.error.message).toMatch(/hls/);

		// Bodies are validated: unknown fields, wrong types, bad JSON.
		stream.addViewer('webrtc', { id: 'sock-10', remoteAddress: '203.0.113.3', disconnect: () => undefined });
		for (const body of [{ reason: 42 }, { reason: 'x', extra: true }, { reason: 'r'.repeat(201) }, '{not json', { reason: 'x'.repeat(5000) }]) {
			const bad = await call(s, 'DELETE', '/api/admin/viewers/sock-10', { headers: auth, body });
			expect(bad.status, JSON.stringify(body)).toBe(400);
			expect(bad.body.error.code).toBe('bad_request');
		}
		// A disconnect function that throws is a server error, reported as such, and the server goes on.
		stream.addViewer('webrtc', {
			id: 'sock-11',
			remoteAddress: '203.0.113.4',
			disconnect: () => {
				throw new Error('socket already gone');
			},
		});
		expect((await call(s, 'DELETE', '/api/admin/viewers/sock-11', { headers: auth })).status).toBe(500);
		expect((await call(s, 'GET', '/api/admin/streams', { headers: auth })).status).toBe(200);
	});

	it('works on real viewers: a WebRTC viewer is disconnected, an HLS viewer is listed but not disconnectable', async () => {
		server = await startTestServer({ auth: { adminToken: TOKEN } });
		const s = server;
		const pub = publishFromFfmpeg(s.registry, 'adm5', { width: 320, height: 180 });
		await eventually(() => pub.publication.stats.videoFrames > 5, 15_000);
		const viewer = await NodeViewer.create({ server: baseUrl(s), stream: 'adm5', iceAddress: '127.0.0.1' });
		const errors: string[] = [];
		viewer.on('error', (e) => errors.push(e.message));
		try {
			await viewer.until((v) => v.video.packets > 20, 20_000);
			// An HLS player: the playlist, then the init segment it names.
			const playlist = await eventually(async () => {
				const r = await fetch(`${baseUrl(s)}/hls/adm5/index.m3u8`);
				return r.status === 200 ? r.text() : null;
			}, 20_000);
			const init = /#EXT-X-MAP:URI="([^"]+)"/.exec(playlist)?.[1];
			expect(init).toBeDefined();
			expect((await fetch(`${baseUrl(s)}/hls/adm5/${init}`)).status).toBe(200);

			const [one] = (await call(s, 'GET', '/api/admin/streams', { headers: auth })).body as AdminStream[];
			expect(one!.viewerCounts).toEqual({ webrtc: 1, hls: 1 });
			const rtc = one!.viewerList.find((v) => v.path === 'webrtc')!;
			const hls = one!.viewerList.find((v) => v.path === 'hls')!;
			expect(rtc).toMatchObject({ id: viewer.id, remoteAddress: expect.stringMatching(/127\.0\.0\.1$/), disconnectable: true });
			expect(hls).toMatchObject({ remoteAddress: expect.stringMatching(/127\.0\.0\.1$/), disconnectable: false });

			expect((await call(s, 'DELETE', `/api/admin/viewers/${encodeURIComponent(hls.id)}`, { headers: auth })).status).toBe(409);
			const r = await call(s, 'DELETE', `/api/admin/viewers/${encodeURIComponent(rtc.id)}`, { headers: auth, body: { reason: 'bye' } });
			expect(r.status).toBe(200);
			await eventually(() => errors.some((m) => /bye/.test(m)), 10_000);
			await eventually(() => s.registry.get('adm5')!.viewerCounts.webrtc === 0, 10_000);
			expect(s.registry.get('adm5')!.live).toBe(true);
		} finally {
			await viewer.close();
			await pub.stop();
		}
	});

	it('closes a stream: kicks the publisher and disconnects its viewers', async () => {
		server = await startTestServer({ auth: { adminToken: TOKEN } });
		const s = server;
		const pub = publishFromFfmpeg(s.registry, 'adm3', { width: 320, height: 180, audio: false });
		await eventually(() => pub.publication.stats.videoFrames > 0, 15_000);
		const stream = s.registry.get('adm3')!;
		const disconnected: string[] = [];
		for (const id of ['a', 'b', 'c']) {
			const release = stream.addViewer('webrtc', {
				id,
				remoteAddress: '192.0.2.1',
				disconnect: (reason) => {
					disconnected.push(`${id}:${reason}`);
					release();
				},
			});
		}
		stream.addViewer('hls', { id: 'h', remoteAddress: '192.0.2.2' });
		// A viewer of another stream is not touched.
		const otherReasons: string[] = [];
		s.registry.getOrCreate('adm4').addViewer('webrtc', { id: 'z', remoteAddress: '192.0.2.3', disconnect: (r) => otherReasons.push(r) });

		const r = await call(s, 'DELETE', '/api/admin/streams/adm3', { headers: auth, body: { reason: 'maintenance' } });
		expect(r.status).toBe(200);
		expect(r.body).toEqual({
			stream: 'adm3',
			kicked: true,
			viewersDisconnected: 3,
			viewersFailed: 0,
			viewersNotDisconnectable: 1,
			reason: 'maintenance',
		});
		expect(disconnected.sort()).toEqual(['a:maintenance', 'b:maintenance', 'c:maintenance']);
		expect(stream.live).toBe(false);
		expect(stream.viewerCounts).toEqual({ webrtc: 0, hls: 1 });
		expect(otherReasons).toEqual([]);
		await pub.ffmpeg.exited;

		expect((await call(s, 'DELETE', '/api/admin/streams/never-seen', { headers: auth })).status).toBe(404);
	});
});
