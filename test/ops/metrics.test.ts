import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import type { types } from 'mediasoup';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../server/common/emitter.js';
import { NodeViewer } from '../../client/node/index.js';
import { SupervisedProcess } from '../../server/common/process.js';
import { loadConfig } from '../../server/config/load.js';
import { Server } from '../../server/server.js';
import { runFfmpeg, stopAllFfmpeg } from '../helpers/ffmpeg.js';
import type { RunningFfmpeg } from '../helpers/ffmpeg.js';
import { publishFromFfmpeg } from '../helpers/flv-publisher.js';
import { baseUrl, eventually, startTestServer, testLogger } from '../helpers/server.js';
import { parseMetrics, sampleSum, sampleValue } from './helpers.js';
import type { Sample } from './helpers.js';

async function scrape(server: Server, headers: Record<string, string> = {}): Promise<Sample[]> {
	const res = await fetch(`${baseUrl(server)}/metrics`, { headers });
	expect(res.status).toBe(200);
	expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
	return parseMetrics(await res.text()).samples;
}

/**
 * ffmpeg sending H.264 over plain RTP into a mediasoup PlainTransport producer (no
 * bridge needed). Its RTCP goes to port + 1, not here: comedia latches onto the first
 * sender, and ffmpeg sends RTCP from a socket of its own.
 */
async function rtpProducer(router: types.Router): Promise<{ producer: types.Producer; ffmpeg: RunningFfmpeg }> {
	const transport = await router.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true, comedia: true });
	const producer = await transport.produce({
		kind: 'video',
		rtpParameters: {
			codecs: [
				{
					mimeType: 'video/H264',
					payloadType: 96,
					clockRate: 90000,
					parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 },
					rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }],
				},
			],
			encodings: [{ ssrc: 22222222 }],
		},
	});
	const port = transport.tuple.localPort;
	const ffmpeg = runFfmpeg([
		'-hide_banner', '-loglevel', 'error', '-nostdin', '-re',
		'-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=25',
		'-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-g', '25', '-pix_fmt', 'yuv420p',
		'-f', 'rtp', '-payload_type', '96', '-ssrc', '22222222', `rtp://127.0.0.1:${port}?pkt_size=1200`,
	]);
	return { producer, ffmpeg };
}

describe('GET /metrics', () => {
	let server: Server | null = null;
	const cleanups: (() => Promise<void> | void)[] = [];
	afterEach(async () => {
		for (const c of cleanups.splice(0).reverse()) await c();
		await server?.close();
		server = null;
		await stopAllFfmpeg();
	});

	it('follows a live stream: streams, publishers, bytes in across publishers, viewers', async () => {
		server = await startTestServer();
		const s = server;

		let samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_streams_live')).toBe(0);
		for (const protocol of ['rtmp', 'rtmps', 'rtp']) expect(sampleValue(samples, 'subsecond_publishers', { protocol })).toBe(0);
		expect(sampleValue(samples, 'subsecond_viewers', { path: 'webrtc' })).toBe(0);
		expect(sampleValue(samples, 'subsecond_viewers', { path: 'hls' })).toBe(0);
		// Process metrics come along, and the build info names the versions.
		expect(sampleValue(samples, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
		expect(samples.find((x) => x.name === 'subsecond_build_info')?.labels.mediasoup).toBe('3.12.16');

		const first = publishFromFfmpeg(s.registry, 'metrics1', { width: 320, height: 180, audio: true });
		await eventually(() => first.publication.stats.videoFrames > 10 && first.publication.stats.audioFrames > 10, 15_000);

		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_streams_live')).toBe(1);
		expect(sampleValue(samples, 'subsecond_publishers', { protocol: 'rtmp' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_publishers', { protocol: 'rtp' })).toBe(0);
		expect(sampleValue(samples, 'subsecond_publish_sessions_total', { protocol: 'rtmp' })).toBe(1);
		const startedAt = sampleValue(samples, 'subsecond_stream_publish_start_time_seconds', { stream: 'metrics1', protocol: 'rtmp' });
		expect(startedAt).toBe(first.publication.startedAt / 1000);
		const video1 = sampleValue(samples, 'subsecond_ingest_bytes_total', { stream: 'metrics1', kind: 'video' }) ?? 0;
		const audio1 = sampleValue(samples, 'subsecond_ingest_bytes_total', { stream: 'metrics1', kind: 'audio' }) ?? 0;
		expect(video1).toBeGreaterThan(0);
		expect(audio1).toBeGreaterThan(0);
		expect(sampleValue(samples, 'subsecond_ingest_keyframes_total', { stream: 'metrics1' })).toBeGreaterThanOrEqual(1);

		// Bytes in move between two scrapes.
		const seenFrames = first.publication.stats.videoFrames;
		await eventually(() => first.publication.stats.videoFrames >= seenFrames + 10, 10_000);
		samples = await scrape(s);
		const video2 = sampleValue(samples, 'subsecond_ingest_bytes_total', { stream: 'metrics1', kind: 'video' }) ?? 0;
		expect(video2).toBeGreaterThan(video1);
		expect(sampleValue(samples, 'subsecond_ingest_bytes_total', { stream: 'metrics1', kind: 'audio' })).toBeGreaterThan(audio1);

		// Viewers registered with the core show per path, totals and per stream.
		const stream = s.registry.get('metrics1')!;
		const releaseWebrtc = stream.addViewer('webrtc', { id: 'viewer-a', remoteAddress: '198.51.100.7', disconnect: () => undefined });
		const releaseWebrtc2 = stream.addViewer('webrtc', { id: 'viewer-b', remoteAddress: '198.51.100.8', disconnect: () => undefined });
		const releaseHls = stream.addViewer('hls');
		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_viewers', { path: 'webrtc' })).toBe(2);
		expect(sampleValue(samples, 'subsecond_viewers', { path: 'hls' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_stream_viewers', { stream: 'metrics1', path: 'webrtc' })).toBe(2);
		expect(sampleValue(samples, 'subsecond_stream_viewers', { stream: 'metrics1', path: 'hls' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_viewer_sessions_total', { path: 'webrtc' })).toBe(2);
		releaseWebrtc();
		releaseHls();
		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_viewers', { path: 'webrtc' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_viewers', { path: 'hls' })).toBe(0);
		releaseWebrtc2();

		// A takeover: the counter keeps growing from where it was (the old publication's
		// last bytes are flushed at its end), and publish sessions count two.
		const beforeTakeover = sampleValue(samples, 'subsecond_ingest_bytes_total', { stream: 'metrics1', kind: 'video' }) ?? 0;
		const unpublished = waitFor(s.registry, 'unpublish', 5000);
		const second = publishFromFfmpeg(s.registry, 'metrics1', { width: 320, height: 180, audio: false });
		await unpublished;
		const firstFinal = first.publication.stats.videoBytes;
		await eventually(() => second.publication.stats.videoFrames > 10, 15_000);
		samples = await scrape(s);
		const afterTakeover = sampleValue(samples, 'subsecond_ingest_bytes_total', { stream: 'metrics1', kind: 'video' }) ?? 0;
		expect(afterTakeover).toBeGreaterThan(beforeTakeover);
		// Everything both publications received, no more and no less (the second may have grown since the scrape).
		expect(afterTakeover).toBeGreaterThanOrEqual(firstFinal + 1);
		expect(afterTakeover).toBeLessThanOrEqual(firstFinal + second.publication.stats.videoBytes);
		expect(sampleValue(samples, 'subsecond_publish_sessions_total', { protocol: 'rtmp' })).toBe(2);
		expect(sampleValue(samples, 'subsecond_streams_live')).toBe(1);

		await second.stop();
		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_streams_live')).toBe(0);
		expect(sampleValue(samples, 'subsecond_publishers', { protocol: 'rtmp' })).toBe(0);
		expect(sampleValue(samples, 'subsecond_stream_publish_start_time_seconds', { stream: 'metrics1', protocol: 'rtmp' })).toBeUndefined();
		// The whole of both publications, now that both ended.
		expect(sampleValue(samples, 'subsecond_ingest_bytes_total', { stream: 'metrics1', kind: 'video' })).toBe(
			firstFinal + second.publication.stats.videoBytes,
		);
	});

	it('counts real viewers (WebRTC and HLS): viewer gauges, egress bytes, SFU objects, bridge children', async () => {
		server = await startTestServer({ metrics: { sfuStatsMaxAgeMs: 0 } });
		const s = server;
		const pub = publishFromFfmpeg(s.registry, 'rtc1', { width: 320, height: 180 });
		// Join once the bridge's video RTP flows: a consumer of a producer that has
		// no RTP stream yet is inactive in mediasoup, and its keyframe requests go nowhere.
		await eventually(async () => {
			const video = s.routers.producers('rtc1').find((p) => p.kind === 'video');
			return video !== undefined && (await video.getStats()).length > 0;
		}, 15_000);
		const viewer = await NodeViewer.create({ server: baseUrl(s), stream: 'rtc1', iceAddress: '127.0.0.1' });
		cleanups.push(() => viewer.close());
		await viewer.until((v) => v.video.packets > 50 && v.audio.packets > 20, 20_000);

		let samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_viewers', { path: 'webrtc' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_stream_viewers', { stream: 'rtc1', path: 'webrtc' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_viewer_sessions_total', { path: 'webrtc' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_sfu_objects', { type: 'webrtc_transports' })).toBe(1);
		// Video and audio for the viewer (and the bridge's producers upstream).
		expect(sampleValue(samples, 'subsecond_sfu_objects', { type: 'consumers' })).toBeGreaterThanOrEqual(2);
		expect(sampleValue(samples, 'subsecond_sfu_objects', { type: 'producers' })).toBeGreaterThanOrEqual(2);
		// The viewer's transport has sent at least what the viewer counted.
		const bytes1 = sampleValue(samples, 'subsecond_egress_bytes_total', { stream: 'rtc1', path: 'webrtc' }) ?? 0;
		expect(bytes1).toBeGreaterThanOrEqual(viewer.video.bytes);
		// The AAC publication runs an audio transcoder, labelled by the bridge.
		const children = samples.filter((x) => x.name === 'subsecond_child_processes' && x.labels.kind !== 'other');
		expect(children.reduce((a, x) => a + x.value, 0)).toBeGreaterThanOrEqual(1);

		// The bridge reports its added delay, and the viewer's keyframe request on resume
		// went upstream as a PLI that the bridge handled.
		expect(sampleValue(samples, 'subsecond_bridge_delay_seconds_count', { kind: 'video' })).toBeGreaterThan(0);
		expect(sampleValue(samples, 'subsecond_bridge_delay_seconds_count', { kind: 'audio' })).toBeGreaterThan(0);
		// A scrape polls mediasoup within a time budget, so on a loaded machine the
		// producers' stats may only be read by a later scrape.
		await eventually(async () => {
			const later = await scrape(s);
			return (
				(sampleValue(later, 'subsecond_keyframe_requests_total', { direction: 'ingest', type: 'pli' }) ?? 0) >= 1 &&
				sampleSum(later, 'subsecond_keyframe_requests_handled_total', { stream: 'rtc1' }) >= 1
			);
		}, 15_000);

		const seen = viewer.video.bytes;
		await viewer.until((v) => v.video.bytes > seen + 20_000, 20_000);
		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_egress_bytes_total', { stream: 'rtc1', path: 'webrtc' })).toBeGreaterThan(bytes1);

		// An HLS player: the playlist and the init segment it names.
		const playlist = await eventually(async () => {
			const r = await fetch(`${baseUrl(s)}/hls/rtc1/index.m3u8`);
			return r.status === 200 ? Buffer.from(await r.arrayBuffer()) : null;
		}, 20_000);
		const initName = /#EXT-X-MAP:URI="([^"]+)"/.exec(playlist.toString('utf8'))?.[1];
		const init = Buffer.from(await (await fetch(`${baseUrl(s)}/hls/rtc1/${initName}`)).arrayBuffer());
		expect(init.length).toBeGreaterThan(100);
		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_viewers', { path: 'hls' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_stream_viewers', { stream: 'rtc1', path: 'hls' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_egress_bytes_total', { stream: 'rtc1', path: 'hls' })).toBeGreaterThanOrEqual(
			playlist.length + init.length,
		);

		await viewer.close();
		await eventually(async () => sampleValue(await scrape(s), 'subsecond_viewers', { path: 'webrtc' }) === 0, 10_000);
		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_sfu_objects', { type: 'webrtc_transports' })).toBe(0);
		await pub.stop();
	});

	it('reports workers, children by kind, hooks, and mediasoup RTP stats', async () => {
		server = await startTestServer({ metrics: { sfuStatsMaxAgeMs: 0 } });
		const s = server;
		const m = s.metrics;

		// A supervised child labelled by its owner; its crash counts as a restart.
		const proc = SupervisedProcess.create({
			name: 'test-sleeper',
			command: 'sleep',
			args: () => ['30'],
			logger: testLogger(),
			initialBackoffMs: 50,
		});
		cleanups.push(() => proc.close());
		m.trackProcess('test-transcoder', proc);
		let samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_child_processes', { kind: 'test-transcoder' })).toBe(1);
		expect(sampleSum(samples, 'subsecond_child_processes')).toBeGreaterThanOrEqual(1);
		const crashed = waitFor(proc, 'crash', 5000);
		proc.child!.kill('SIGKILL');
		await crashed;
		await waitFor(proc, 'spawn', 5000);
		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_child_restarts_total', { kind: 'test-transcoder' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_child_processes', { kind: 'test-transcoder' })).toBe(1);
		await proc.close();
		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_child_processes', { kind: 'test-transcoder' })).toBeUndefined();

		// Worker CPU and memory from mediasoup's resource usage.
		expect(sampleValue(samples, 'subsecond_worker_cpu_seconds_total', { worker: '0', mode: 'user' })).toBeGreaterThan(0);
		expect(sampleValue(samples, 'subsecond_worker_max_rss_bytes', { worker: '0' })).toBeGreaterThan(1024 * 1024);
		expect(sampleValue(samples, 'subsecond_worker_rss_bytes', { worker: '0' })).toBeGreaterThan(1024 * 1024);

		// Hooks other components call.
		m.observeBridgeDelay('video', 3);
		m.observeBridgeDelay('video', 40);
		m.observeBridgeDelay('audio', 25);
		m.keyframeRequest('hooked', 'forced');
		m.keyframeRequest('hooked', 'rate_limited');
		m.keyframeRequest('hooked', 'rate_limited');
		m.framesDropped('hls-writer', 3);
		m.bytesOut('hls', 'hooked', 1000);
		m.bytesOut('hls', 'hooked', 500);
		m.ingestError('rtmp', 'malformed', 2);
		const queue = { dropped: 5 };
		const untrack = m.trackQueue('opus-encoder', queue);
		let connections = 3;
		const untrackConn = m.trackConnections('rtmp', () => connections);
		let collected = 0;
		const removeCollector = m.addCollector('test', () => {
			collected++;
			throw new Error('a faulty collector must not break the scrape');
		});
		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_bridge_delay_seconds_count', { kind: 'video' })).toBe(2);
		expect(sampleValue(samples, 'subsecond_bridge_delay_seconds_bucket', { kind: 'video', le: '0.005' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_bridge_delay_seconds_sum', { kind: 'video' })).toBeCloseTo(0.043, 6);
		expect(sampleValue(samples, 'subsecond_bridge_delay_seconds_count', { kind: 'audio' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_keyframe_requests_handled_total', { stream: 'hooked', outcome: 'rate_limited' })).toBe(2);
		expect(sampleValue(samples, 'subsecond_frames_dropped_total', { component: 'hls-writer' })).toBe(3);
		expect(sampleValue(samples, 'subsecond_frames_dropped_total', { component: 'opus-encoder' })).toBe(5);
		expect(sampleValue(samples, 'subsecond_egress_bytes_total', { stream: 'hooked', path: 'hls' })).toBe(1500);
		expect(sampleValue(samples, 'subsecond_ingest_errors_total', { protocol: 'rtmp', reason: 'malformed' })).toBe(2);
		expect(sampleValue(samples, 'subsecond_ingest_connections', { protocol: 'rtmp' })).toBe(3);
		expect(sampleValue(samples, 'subsecond_ingest_connections', { protocol: 'rtp' })).toBe(0);
		expect(collected).toBe(1);
		queue.dropped = 9;
		connections = 1;
		untrack(); // counts the last 4
		untrackConn();
		removeCollector();
		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_frames_dropped_total', { component: 'opus-encoder' })).toBe(9);
		expect(sampleValue(samples, 'subsecond_ingest_connections', { protocol: 'rtmp' })).toBe(0);
		expect(collected).toBe(1);

		// mediasoup: a producer fed by ffmpeg over RTP, a consumer that asks it for
		// keyframes, and a viewer transport; the collector finds them all by itself.
		const origin = await s.routers.origin('sfu1');
		const { producer } = await rtpProducer(origin.router);
		await eventually(async () => {
			const st = await producer.getStats();
			return st.some((x) => x.packetCount > 50);
		}, 15_000);
		const sink = dgram.createSocket('udp4');
		await new Promise<void>((r) => sink.bind(0, '127.0.0.1', r));
		cleanups.push(() => new Promise<void>((r) => sink.close(() => r())));
		const out = await origin.router.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true, comedia: false });
		await out.connect({ ip: '127.0.0.1', port: sink.address().port });
		const consumer = await out.consume({ producerId: producer.id, rtpCapabilities: origin.router.rtpCapabilities });
		const viewer = await s.routers.viewerRouter('sfu1');
		const webrtc = await viewer.router.createWebRtcTransport({ webRtcServer: viewer.slot.webRtcServer });

		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_sfu_objects', { type: 'routers' })).toBeGreaterThanOrEqual(1);
		expect(sampleValue(samples, 'subsecond_sfu_objects', { type: 'producers' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_sfu_objects', { type: 'consumers' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_sfu_objects', { type: 'plain_transports' })).toBe(2);
		expect(sampleValue(samples, 'subsecond_sfu_objects', { type: 'webrtc_transports' })).toBe(1);
		expect(sampleValue(samples, 'subsecond_sfu_stats_polled_ratio')).toBe(1);
		// The unconnected viewer transport has sent nothing, but its stream is labelled.
		expect(sampleValue(samples, 'subsecond_egress_bytes_total', { stream: 'sfu1', path: 'webrtc' })).toBe(0);

		// Each keyframe request of the consumer becomes a PLI the SFU sends upstream.
		const pliBefore = sampleValue(samples, 'subsecond_keyframe_requests_total', { direction: 'ingest', type: 'pli' }) ?? 0;
		for (let i = 0; i < 3; i++) {
			await consumer.requestKeyFrame();
			await new Promise((r) => setTimeout(r, 1100)); // mediasoup holds back PLIs sent within 1 s of the last
		}
		await eventually(async () => {
			const now = await scrape(s);
			return (sampleValue(now, 'subsecond_keyframe_requests_total', { direction: 'ingest', type: 'pli' }) ?? 0) >= pliBefore + 2;
		}, 10_000, 300);
		samples = await scrape(s);
		for (const direction of ['ingest', 'egress']) {
			for (const kind of ['video', 'audio']) {
				expect(sampleValue(samples, 'subsecond_rtp_packets_lost_total', { direction, kind })).toBeGreaterThanOrEqual(0);
				expect(sampleValue(samples, 'subsecond_rtp_retransmitted_packets_total', { direction, kind })).toBeGreaterThanOrEqual(0);
			}
		}

		webrtc.close();
		out.close();
		samples = await scrape(s);
		expect(sampleValue(samples, 'subsecond_sfu_objects', { type: 'webrtc_transports' })).toBe(0);
		expect(sampleValue(samples, 'subsecond_sfu_objects', { type: 'consumers' })).toBe(0);
		expect(sampleValue(samples, 'subsecond_sfu_objects', { type: 'plain_transports' })).toBe(1);
	});

	it('can require the admin token, and can be turned off', async () => {
		server = await startTestServer({ auth: { adminToken: 'scrape-secret' }, metrics: { requireAdminToken: true } });
		const url = `${baseUrl(server)}/metrics`;
		expect((await fetch(url)).status).toBe(401);
		expect((await fetch(url, { headers: { Authorization: 'Bearer nope' } })).status).toBe(401);
		const ok = await scrape(server, { Authorization: 'Bearer scrape-secret' });
		expect(sampleValue(ok, 'subsecond_streams_live')).toBe(0);
		await server.close();

		server = await startTestServer({ metrics: { enabled: false } });
		expect((await fetch(`${baseUrl(server)}/metrics`)).status).toBe(404);
		// The hooks still work for components, with nothing served.
		server.metrics.framesDropped('x', 1);
		await server.close();

		server = null;
		const config = loadConfig({
			env: {},
			file: null,
			overrides: {
				http: { host: '127.0.0.1', port: 0 },
				rtc: { port: 0, listenIp: '127.0.0.1', announcedIp: '127.0.0.1', workers: 1 },
				metrics: { requireAdminToken: true },
			},
		});
		await expect(Server.create(config, { logger: testLogger() })).rejects.toThrow(/requireAdminToken.*adminToken/);
	});

	it('every series is named subsecond_* with help, and scrapes of two servers do not mix', async () => {
		server = await startTestServer();
		const other = await startTestServer();
		cleanups.push(() => other.close());
		publishFromFfmpeg(other.registry, 'elsewhere', { width: 320, height: 180, audio: false });
		await eventually(() => other.registry.get('elsewhere')?.publication?.stats.videoFrames, 15_000);
		const text = await (await fetch(`${baseUrl(server)}/metrics`)).text();
		const { samples, help, types } = parseMetrics(text);
		expect(sampleValue(samples, 'subsecond_streams_live')).toBe(0);
		expect(sampleValue(parseMetrics(await other.metrics.scrape()).samples, 'subsecond_streams_live')).toBe(1);
		const ours = [...types.keys()].filter((n) => n.startsWith('subsecond_'));
		expect(ours.length).toBeGreaterThanOrEqual(30);
		for (const name of ours) {
			expect(help.get(name)?.length, name).toBeGreaterThan(10);
			if (types.get(name) === 'counter') expect(name, 'counters end in _total').toMatch(/_total$/);
		}
		for (const name of types.keys()) expect(name).toMatch(/^(subsecond_|process_|nodejs_)/);
		// docs/deploy.md lists exactly these, with their types.
		const deploy = fs.readFileSync(path.join(import.meta.dirname, '..', '..', 'docs', 'deploy.md'), 'utf8');
		const documented = new Map([...deploy.matchAll(/^\| `(subsecond_[a-z_]+)` \| (\w+) \|/gm)].map((m) => [m[1]!, m[2]!]));
		expect([...documented.keys()].sort()).toEqual(ours.sort());
		for (const name of ours) expect(documented.get(name), name).toBe(types.get(name));
	});
});
