import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../server/common/emitter.js';
import { StreamRegistry } from '../../server/core/stream.js';
import type { PublishRequest } from '../../server/core/stream.js';
import type { Server } from '../../server/server.js';
import { maskSecrets } from '../../server/config/load.js';
import { Webhooks, webhookSignature } from '../../server/webhooks/webhooks.js';
import type { NotificationPayload } from '../../server/webhooks/webhooks.js';
import { runFfmpeg, stopAllFfmpeg, testSourceArgs } from '../helpers/ffmpeg.js';
import { publishFromFfmpeg } from '../helpers/flv-publisher.js';
import { eventually, startTestServer, testLogger } from '../helpers/server.js';
import { HookServer, closedPort, parseMetrics, sampleValue } from './helpers.js';

const req = (stream: string, key: string | null = 'k3y'): PublishRequest => ({
	stream,
	key,
	protocol: 'rtmp',
	remoteAddress: '198.51.100.20',
});

/** Resolves to null when the publish is allowed, or to the refusal. */
async function outcome(server: Server, r: PublishRequest): Promise<{ code: string; message: string } | null> {
	try {
		await server.registry.authorizePublish(r);
		return null;
	} catch (err) {
		const e = err as { code: string; message: string };
		return { code: e.code, message: e.message };
	}
}

describe('webhooks', () => {
	let server: Server | null = null;
	const hooks: HookServer[] = [];
	const cleanups: (() => Promise<void> | void)[] = [];
	const hookServer = async (): Promise<HookServer> => {
		const h = await HookServer.create();
		hooks.push(h);
		return h;
	};
	afterEach(async () => {
		for (const c of cleanups.splice(0).reverse()) await c();
		await server?.close();
		server = null;
		for (const h of hooks.splice(0)) await h.close();
		await stopAllFfmpeg();
	});

	describe('publish hook', () => {
		it('allows on 2xx and sends stream, protocol, address and key', async () => {
			const hook = await hookServer();
			server = await startTestServer({ webhooks: { publish: hook.url('/publish') } });
			expect(await outcome(server, req('wh1'))).toBeNull();
			expect(hook.requests).toHaveLength(1);
			const r = hook.requests[0]!;
			expect(r.method).toBe('POST');
			expect(r.headers['content-type']).toBe('application/json');
			expect(r.headers['x-subsecond-event']).toBe('publish');
			expect(r.headers['user-agent']).toMatch(/^subsecond\/\d/);
			expect(r.headers['x-subsecond-signature']).toBeUndefined();
			expect(r.body).toEqual({
				event: 'publish',
				stream: 'wh1',
				protocol: 'rtmp',
				remoteAddress: '198.51.100.20',
				key: 'k3y',
				timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
			});
			// A 200 with some other body, or { allow: true }, also allows.
			hook.handler = (_r, res) => res.writeHead(200, { 'Content-Type': 'text/plain' }).end('fine');
			expect(await outcome(server, req('wh1', null))).toBeNull();
			expect((hook.requests[1]!.body as { key: unknown }).key).toBeNull();
			hook.handler = (_r, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"allow":true}');
			expect(await outcome(server, req('wh1'))).toBeNull();
		});

		it('denies on 403, 401 and { allow: false } with the hook reason', async () => {
			const hook = await hookServer();
			server = await startTestServer({ webhooks: { publish: hook.url() } });
			hook.handler = (_r, res) =>
				res.writeHead(403, { 'Content-Type': 'application/json' }).end(JSON.stringify({ reason: 'stream wh2 is suspended' }));
			expect(await outcome(server, req('wh2'))).toEqual({ code: 'forbidden', message: 'stream wh2 is suspended' });

			hook.handler = (_r, res) => res.writeHead(401, { 'Content-Type': 'text/plain' }).end('bad key\nmore');
			expect(await outcome(server, req('wh2'))).toEqual({ code: 'unauthorized', message: 'bad key' });

			hook.handler = (_r, res) =>
				res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ allow: false, reason: 'over quota' }));
			expect(await outcome(server, req('wh2'))).toEqual({ code: 'forbidden', message: 'over quota' });

			hook.handler = (_r, res) => res.writeHead(403).end();
			expect(await outcome(server, req('wh2'))).toEqual({ code: 'forbidden', message: 'refused by the publish webhook' });

			const m = parseMetrics(await server.metrics.scrape()).samples;
			expect(sampleValue(m, 'subsecond_webhook_requests_total', { event: 'publish', result: 'denied' })).toBe(4);
		});

		it('signs every call with webhooks.secret, over the timestamp and the exact body', async () => {
			const hook = await hookServer();
			server = await startTestServer({ webhooks: { publish: hook.url('/publish'), viewerJoin: hook.url('/join'), secret: 'whsec-test' } });
			expect(await outcome(server, req('wh-sig'))).toBeNull();
			server.registry.getOrCreate('wh-sig').addViewer('webrtc', { id: 's1', remoteAddress: '192.0.2.9', disconnect: () => undefined });
			await eventually(() => hook.requests.length === 2);
			for (const r of hook.requests) {
				const ts = String(r.headers['x-subsecond-timestamp']);
				expect(Math.abs(Number(ts) - Date.now() / 1000)).toBeLessThan(60);
				expect(r.headers['x-subsecond-signature']).toBe(webhookSignature('whsec-test', ts, r.raw));
				expect(r.headers['x-subsecond-signature']).not.toBe(webhookSignature('other-secret', ts, r.raw));
			}
			// The secret is masked in the logged config, like every *secret key.
			expect(JSON.stringify(maskSecrets(server.config))).not.toContain('whsec-test');
		});

		it('runs after the stream-key check: a wrong key never reaches the hook', async () => {
			const hook = await hookServer();
			server = await startTestServer({ auth: { publish: { keys: { wh3: 'right' } } }, webhooks: { publish: hook.url() } });
			expect((await outcome(server, req('wh3', 'wrong')))?.code).toBe('unauthorized');
			expect(hook.requests).toHaveLength(0);
			expect(await outcome(server, req('wh3', 'right'))).toBeNull();
			expect((hook.requests[0]?.body as { key: string }).key).toBe('right');
		});

		it('decides real RTMP publishes: ffmpeg is refused with the reason, or goes live', async () => {
			const hook = await hookServer();
			server = await startTestServer({ webhooks: { publish: hook.url() } });
			const s = server;
			const rtmpUrl = (name: string): string => `rtmp://127.0.0.1:${s.info().rtmp!.port}/live/${name}?key=k-${name}`;
			hook.handler = (r, res) => {
				const body = r.body as { stream: string };
				if (body.stream === 'wh-denied') {
					res.writeHead(403, { 'Content-Type': 'application/json' }).end('{"reason":"not on the schedule"}');
				} else {
					res.writeHead(204).end();
				}
			};
			const denied = runFfmpeg([...testSourceArgs({ width: 320, height: 180, audio: false }), '-f', 'flv', rtmpUrl('wh-denied')]);
			const code = await Promise.race([denied.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 20_000))]);
			expect(code, denied.stderr()).not.toBe(0);
			// The publisher is told why.
			expect(denied.stderr()).toMatch(/Server error: not on the schedule/);
			expect(code).not.toBe('running');
			expect(s.registry.get('wh-denied')?.live ?? false).toBe(false);

			const allowed = runFfmpeg([...testSourceArgs({ width: 320, height: 180, audio: false }), '-f', 'flv', rtmpUrl('wh-allowed')]);
			await eventually(() => s.registry.get('wh-allowed')?.live, 20_000);
			expect(hook.bodies()).toEqual([
				expect.objectContaining({ event: 'publish', stream: 'wh-denied', protocol: 'rtmp', remoteAddress: '127.0.0.1', key: 'k-wh-denied' }),
				expect.objectContaining({ event: 'publish', stream: 'wh-allowed', protocol: 'rtmp', remoteAddress: '127.0.0.1', key: 'k-wh-allowed' }),
			]);
			await allowed.stop();
		});

		for (const onFailure of ['deny', 'allow'] as const) {
			it(`with publishOnFailure=${onFailure}: a hook that is down, slow, failing or redirecting ${onFailure === 'deny' ? 'refuses' : 'allows'}`, async () => {
				const hook = await hookServer();
				const down = `http://127.0.0.1:${await closedPort()}/hook`;
				const expectFailure = async (s: Server, what: RegExp): Promise<void> => {
					const o = await outcome(s, req('wh4'));
					if (onFailure === 'allow') {
						expect(o).toBeNull();
					} else {
						expect(o?.code).toBe('unavailable');
						expect(o?.message).toMatch(what);
					}
				};

				// Down: connection refused.
				server = await startTestServer({ webhooks: { publish: down, publishOnFailure: onFailure, timeoutMs: 500 } });
				await expectFailure(server, /unreachable \(ECONNREFUSED\)/);
				let m = parseMetrics(await server.metrics.scrape()).samples;
				expect(sampleValue(m, 'subsecond_webhook_requests_total', { event: 'publish', result: 'network_error' })).toBe(1);
				await server.close();

				// Slow: answers long after the timeout.
				server = await startTestServer({ webhooks: { publish: hook.url(), publishOnFailure: onFailure, timeoutMs: 300 } });
				const timers: NodeJS.Timeout[] = [];
				cleanups.push(() => timers.forEach(clearTimeout));
				hook.handler = (_r, res) => {
					timers.push(setTimeout(() => res.writeHead(204).end(), 5000));
				};
				await expectFailure(server, /did not answer within 300 ms/);
				m = parseMetrics(await server.metrics.scrape()).samples;
				expect(sampleValue(m, 'subsecond_webhook_requests_total', { event: 'publish', result: 'timeout' })).toBe(1);

				// Headers in time, body too slow: still a timeout.
				hook.handler = (_r, res) => {
					res.writeHead(200, { 'Content-Type': 'application/json' });
					res.write('{"allow":');
					timers.push(setTimeout(() => res.end('false}'), 5000));
				};
				await expectFailure(server, /did not answer within 300 ms/);

				// A server error and a redirect are failures too, never an allow by accident.
				hook.handler = (_r, res) => res.writeHead(500).end('oops');
				await expectFailure(server, /answered HTTP 500/);
				hook.handler = (_r, res) => res.writeHead(302, { Location: 'http://127.0.0.1:1/login' }).end();
				await expectFailure(server, /answered HTTP 302/);
				expect(hook.requests.every((r) => r.url === '/hook')).toBe(true);
			});
		}
	});

	describe('notifications', () => {
		it('sends unpublish with duration and bytes, and viewer join and leave', async () => {
			const hook = await hookServer();
			server = await startTestServer({
				webhooks: { unpublish: hook.url('/unpublish'), viewerJoin: hook.url('/join'), viewerLeave: hook.url('/leave') },
			});
			const s = server;
			const pub = publishFromFfmpeg(s.registry, 'wh5', { width: 320, height: 180 });
			await eventually(() => pub.publication.stats.videoFrames > 10 && pub.publication.stats.audioFrames > 10, 15_000);
			const stream = s.registry.get('wh5')!;
			const release = stream.addViewer('webrtc', { id: 'v-1', remoteAddress: '192.0.2.44', disconnect: () => undefined });
			stream.addViewer('hls'); // not listed: no notification
			await eventually(() => hook.bodies('/join').length === 1);
			release();
			await eventually(() => hook.bodies('/leave').length === 1);
			await pub.stop();
			await eventually(() => hook.bodies('/unpublish').length === 1);

			const [join] = hook.bodies<NotificationPayload>('/join');
			expect(join).toEqual({
				event: 'viewerJoin',
				stream: 'wh5',
				id: 'v-1',
				path: 'webrtc',
				remoteAddress: '192.0.2.44',
				joinedAt: expect.any(String),
				seq: 1,
				timestamp: expect.any(String),
			});
			const [leave] = hook.bodies<NotificationPayload & { durationMs: number }>('/leave');
			expect(leave).toMatchObject({ event: 'viewerLeave', stream: 'wh5', id: 'v-1', path: 'webrtc', seq: 2 });
			expect(leave!.durationMs).toBeGreaterThanOrEqual(0);
			const [unpub] = hook.bodies<{ bytes: { total: number }; durationMs: number; startedAt: string }>('/unpublish');
			const st = pub.publication.stats;
			expect(unpub).toMatchObject({
				event: 'unpublish',
				stream: 'wh5',
				publication: pub.publication.id,
				protocol: 'rtmp',
				remoteAddress: '127.0.0.1',
				reason: expect.any(String),
				seq: 3,
				bytes: { video: st.videoBytes, audio: st.audioBytes, total: st.videoBytes + st.audioBytes },
				frames: { video: st.videoFrames, audio: st.audioFrames, keyframes: st.keyframes },
			});
			expect(unpub!.bytes.total).toBeGreaterThan(0);
			expect(unpub!.durationMs).toBeGreaterThan(0);
			expect(Date.parse(unpub!.startedAt)).toBe(pub.publication.startedAt);
			expect(hook.requests.every((r) => r.headers['x-subsecond-event'] === (r.body as { event: string }).event)).toBe(true);

			const m = parseMetrics(await s.metrics.scrape()).samples;
			expect(sampleValue(m, 'subsecond_webhook_requests_total', { event: 'unpublish', result: 'ok' })).toBe(1);
			expect(sampleValue(m, 'subsecond_webhook_requests_total', { event: 'viewerJoin', result: 'ok' })).toBe(1);
		});

		it('retries failures with backoff, gives up on permanent errors, and delivers the unpublish of a shutdown', async () => {
			const hook = await hookServer();
			server = await startTestServer({ webhooks: { unpublish: hook.url('/unpublish'), viewerJoin: hook.url('/join') } });
			const s = server;
			let calls = 0;
			hook.handler = (r, res) => {
				if (r.url === '/join') return void res.writeHead(404).end();
				calls++;
				res.writeHead(calls < 3 ? 503 : 200).end();
			};
			s.registry.getOrCreate('wh6').addViewer('webrtc', { id: 'j', remoteAddress: '192.0.2.1', disconnect: () => undefined });
			const pub = publishFromFfmpeg(s.registry, 'wh6', { width: 320, height: 180, audio: false });
			await eventually(() => pub.publication.stats.videoFrames > 0, 15_000);
			pub.publication.end('test ended it');
			await eventually(() => calls === 3, 10_000);
			const unpublishes = hook.requests.filter((r) => r.url === '/unpublish');
			expect(unpublishes).toHaveLength(3);
			// The same notification each time.
			expect(new Set(unpublishes.map((r) => JSON.stringify(r.body))).size).toBe(1);
			expect(unpublishes[2]!.receivedAt - unpublishes[0]!.receivedAt).toBeGreaterThanOrEqual(500 + 1000 - 50);
			// 404 is not worth repeating.
			expect(hook.requests.filter((r) => r.url === '/join')).toHaveLength(1);
			const m = parseMetrics(await s.metrics.scrape()).samples;
			expect(sampleValue(m, 'subsecond_webhook_requests_total', { event: 'unpublish', result: 'http_error' })).toBe(2);
			expect(sampleValue(m, 'subsecond_webhook_requests_total', { event: 'unpublish', result: 'ok' })).toBe(1);
			expect(sampleValue(m, 'subsecond_webhook_dropped_total', { event: 'viewerJoin' })).toBe(1);

			// Shutdown: the registry ends live publications, and their unpublish still goes out.
			hook.handler = (_r, res) => res.writeHead(204).end();
			const live = publishFromFfmpeg(s.registry, 'wh7', { width: 320, height: 180, audio: false });
			await eventually(() => live.publication.stats.videoFrames > 0, 15_000);
			await s.close();
			server = null;
			const last = hook.bodies<{ stream: string; reason: string }>('/unpublish').at(-1);
			expect(last).toMatchObject({ stream: 'wh7', reason: 'server shutting down' });
		});

		it('never blocks the caller: a bounded queue drops the oldest and counts', async () => {
			const hook = await hookServer();
			const timers: NodeJS.Timeout[] = [];
			hook.handler = (_r, res) => {
				timers.push(setTimeout(() => res.writeHead(204).end(), 300));
			};
			const registry = new StreamRegistry({ logger: testLogger(), maxStreams: 10 });
			const dropped: NotificationPayload[] = [];
			const wh = new Webhooks({
				config: {
					publish: null,
					publishOnFailure: 'deny',
					unpublish: null,
					viewerJoin: hook.url('/join'),
					viewerLeave: null,
					timeoutMs: 2000,
					secret: null,
				},
				registry,
				logger: testLogger(),
				queueCapacity: 5,
				concurrency: 1,
			});
			const whys = new Set<string>();
			wh.on('dropped', (p, why) => {
				whys.add(why);
				dropped.push(p);
			});
			cleanups.push(async () => {
				await wh.close();
				registry.close();
				timers.forEach(clearTimeout);
			});
			const stream = registry.getOrCreate('wh8');
			for (let i = 0; i < 20; i++) stream.addViewer('webrtc', { id: `v${i}`, remoteAddress: '192.0.2.1' });
			// One in flight, five queued, the fourteen oldest of the rest dropped.
			expect(wh.dropped).toBe(14);
			expect([...whys]).toEqual(['queue_full']);
			expect(dropped.map((p) => p.seq)).toEqual(Array.from({ length: 14 }, (_, i) => i + 2));
			expect(await wh.idle(10_000)).toBe(true);
			expect(hook.bodies<{ id: string }>('/join').map((b) => b.id)).toEqual(['v0', 'v15', 'v16', 'v17', 'v18', 'v19']);
		});

		it('close() gives up on a dead hook within its drain time and stops listening', async () => {
			const registry = new StreamRegistry({ logger: testLogger(), maxStreams: 10 });
			cleanups.push(() => registry.close());
			const wh = new Webhooks({
				config: {
					publish: `http://127.0.0.1:${await closedPort()}/`,
					publishOnFailure: 'deny',
					unpublish: null,
					viewerJoin: `http://127.0.0.1:${await closedPort()}/`,
					viewerLeave: null,
					timeoutMs: 1000,
					secret: null,
				},
				registry,
				logger: testLogger(),
				retryDelayMs: 10_000,
				drainTimeoutMs: 200,
			});
			const gaveUp: string[] = [];
			wh.on('dropped', (_p, why) => gaveUp.push(why));
			registry.getOrCreate('wh9').addViewer('webrtc', { id: 'x', remoteAddress: '192.0.2.1' });
			await eventually(() => wh.pending === 1);
			const closing = wh.close();
			await closing;
			expect(gaveUp).toEqual(['closed']);
			expect(wh.pending).toBe(0);
			// After close the guard refuses instead of letting publishes through unchecked.
			await expect(wh.publishGuard(req('wh9'))).rejects.toThrow(/closed/);
			const joined = waitFor(registry, 'viewerJoin', 1000);
			registry.getOrCreate('wh9').addViewer('webrtc', { id: 'y', remoteAddress: '192.0.2.1' });
			await joined;
			expect(wh.pending).toBe(0);
		});
	});
});
