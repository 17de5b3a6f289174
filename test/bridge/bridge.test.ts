import { afterEach, describe, expect, it } from 'vitest';
import type { BridgeSession, BridgeStreamInfo } from '../../ingest/bridge/index.js';
import type { StreamInfo } from '../../server/core/stream.js';
import { waitFor } from '../../server/common/emitter.js';
import type { ConfigInput } from '../../server/config/schema.js';
import type { Server } from '../../server/server.js';
import { runFfmpeg, stopAllFfmpeg, testSourceArgs } from '../helpers/ffmpeg.js';
import type { TestSourceOptions } from '../helpers/ffmpeg.js';
import { publishFromFfmpeg } from '../helpers/flv-publisher.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { ffmpegRtpArgs, postRtp } from '../rtp/helpers.js';
import { RtpProbe, decodeErrors, decodeProbes, ffmpegChildren, wallOfRtp } from './helpers.js';

const OBS_LIKE: TestSourceOptions = { profile: 'high', bframes: 2, width: 640, height: 360, fps: 25, audioRate: 48000, audioChannels: 2 };

describe('ingest bridge, end to end', () => {
	let server: Server | null = null;
	const probes: RtpProbe[] = [];

	async function start(overrides: ConfigInput = {}): Promise<Server> {
		server = await startTestServer({ rtmp: { enabled: false }, ...overrides });
		return server;
	}

	afterEach(async () => {
		for (const p of probes.splice(0)) p.close();
		await stopAllFfmpeg();
		await server?.close();
		server = null;
	});

	async function liveSession(s: Server, name: string, kinds = 2): Promise<BridgeSession> {
		await eventually(() => s.routers.producers(name).length === kinds, 20_000);
		const session = s.bridge?.session(name);
		if (!session) throw new Error('no bridge session');
		return session;
	}

	/**
	 * Waits until the transcoders produce steadily: ffmpeg can take seconds
	 * to start on a loaded machine, and the first frames of a backlog are
	 * shed rather than sent late.
	 */
	async function steady(session: BridgeSession): Promise<void> {
		const start = session.stats();
		await eventually(() => {
			const st = session.stats();
			const video = !st.videoTranscoder || st.videoTranscoder.framesOut > (start.videoTranscoder?.framesOut ?? 0) + 25;
			const audio = !st.opusTranscoder || st.opusTranscoder.packetsOut > (start.opusTranscoder?.packetsOut ?? 0) + 100;
			return video && audio && (st.addedDelayMs.audio.p50 ?? 0) < 1000;
		}, 40_000, 100);
	}

	async function probe(s: Server, name: string, kind: 'audio' | 'video'): Promise<RtpProbe> {
		const { router } = await s.routers.viewerRouter(name);
		const producer = s.routers.producers(name).find((p) => p.kind === kind);
		if (!producer) throw new Error(`no ${kind} producer`);
		const p = await RtpProbe.create(router, producer);
		probes.push(p);
		return p;
	}

	async function streamInfo(s: Server, name: string): Promise<StreamInfo & { webrtc: BridgeStreamInfo }> {
		const res = await fetch(`${baseUrl(s)}/api/streams/${name}`);
		expect(res.status).toBe(200);
		return (await res.json()) as StreamInfo & { webrtc: BridgeStreamInfo };
	}

	it('passes Constrained Baseline through and transcodes AAC to Opus; both decode cleanly', async () => {
		const s = await start();
		publishFromFfmpeg(s.registry, 'plain', { profile: 'baseline', width: 640, height: 360, fps: 25, audioRate: 44100, audioChannels: 2 });
		const session = await liveSession(s, 'plain');
		expect(session.videoPath).toBe('passthrough');
		expect(session.audioPath).toBe('aac-to-opus');
		const info = await streamInfo(s, 'plain');
		expect(info.webrtc).toMatchObject({ videoPath: 'passthrough', audioPath: 'aac-to-opus', ready: true });
		expect(info.webrtc.videoProfileLevelId).toMatch(/^42e0/);
		expect(info.webrtc.reason).toMatch(/Constrained Baseline/);
		expect(s.registry.get('plain')!.publication!.videoPath).toEqual({ mode: 'passthrough', reason: info.webrtc.reason });

		await steady(session);
		const video = await probe(s, 'plain', 'video');
		const audio = await probe(s, 'plain', 'audio');
		const result = await decodeProbes(video, audio, 3);
		expect(decodeErrors(result.stderr)).toEqual([]);
		expect(result).toMatchObject({ width: 640, height: 360, sampleRate: 48000, channels: 'stereo' });
		expect(result.videoFrames).toBeGreaterThanOrEqual(50);
		expect(result.audioFrames).toBeGreaterThanOrEqual(100);
		const stats = session.stats();
		expect(stats.video.packets).toBeGreaterThan(50);
		expect(stats.audio.packets).toBeGreaterThan(100);
		expect(stats.video.senderReports).toBeGreaterThanOrEqual(2);
		expect(stats.audio.senderReports).toBeGreaterThanOrEqual(2);
		expect(stats.addedDelayMs.video.count).toBeGreaterThan(0);
		expect(stats.addedDelayMs.audio.count).toBeGreaterThan(0);
	});

	it("puts audio and video on one clock in the viewers' sender reports (lip sync)", async () => {
		const s = await start();
		const pub = publishFromFfmpeg(s.registry, 'sync', { profile: 'baseline', audioRate: 44100 });
		const session = await liveSession(s, 'sync');
		await steady(session);
		const video = await probe(s, 'sync', 'video');
		const audio = await probe(s, 'sync', 'audio');
		let last: { pts: number; receivedAt: number } | null = null;
		pub.publication.on('video', (f) => (last = { pts: f.pts, receivedAt: f.receivedAt }));
		// mediasoup writes each consumer's reports from when it forwarded the
		// stream's newest packet: they agree only if both streams' RTP times
		// come from one timeline and both paths are quick.
		video.lastSr = null;
		audio.lastSr = null;
		await eventually(() => video.lastSr && audio.lastSr && last, 15_000);
		const frame = last as unknown as { pts: number; receivedAt: number };
		const vWall = wallOfRtp(video.lastSr!, session.rtpTimestampOf('video', frame.pts)!, 90000);
		const aWall = wallOfRtp(audio.lastSr!, session.rtpTimestampOf('audio', frame.pts)!, 48000);
		// (mediasoup's NTP times count from its own clock's origin: only the difference means anything.)
		expect(Math.abs(vWall - aWall)).toBeLessThan(60);
	});

	it('transcodes an OBS-like stream (High, B-frames, 48 kHz stereo AAC) under auto, and says why', async () => {
		const s = await start();
		publishFromFfmpeg(s.registry, 'obs', OBS_LIKE);
		const session = await liveSession(s, 'obs');
		expect(session.videoPath).toBe('transcode');
		const info = await streamInfo(s, 'obs');
		expect(info.webrtc).toMatchObject({ videoPath: 'transcode', audioPath: 'aac-to-opus', videoProfileLevelId: '42e01f' });
		expect(info.webrtc.reason).toMatch(/High profile/);
		const pub = s.registry.get('obs')!.publication!;
		expect(pub.videoPath?.mode).toBe('transcode');
		expect(pub.rendition).not.toBeNull();
		// HLS and every other follower of the rendition get the transcoded pictures.
		const renditionConfig = await eventually(() => pub.rendition?.config, 15_000);
		expect(renditionConfig.profile).toBe('Constrained Baseline');
		expect(renditionConfig.width).toBe(640);

		await steady(session);
		const video = await probe(s, 'obs', 'video');
		const audio = await probe(s, 'obs', 'audio');
		const result = await decodeProbes(video, audio, 3);
		expect(decodeErrors(result.stderr)).toEqual([]);
		expect(result).toMatchObject({ width: 640, height: 360, sampleRate: 48000, channels: 'stereo' });
		// On a loaded machine the transcoder sheds late pictures; what it sends decodes.
		expect(result.videoFrames).toBeGreaterThanOrEqual(20);
		expect(result.audioFrames).toBeGreaterThanOrEqual(100);
		expect(session.stats().videoTranscoder?.framesOut).toBeGreaterThan(50);
	});

	it('refuses an OBS-like stream under reject, with the reason', async () => {
		const s = await start({ streams: { videoPolicy: 'reject' } });
		const unpublished = waitFor(s.registry, 'unpublish', 15_000);
		const pub = publishFromFfmpeg(s.registry, 'refused', OBS_LIKE);
		const [, publication, reason] = await unpublished;
		expect(publication).toBe(pub.publication);
		expect(reason).toMatch(/videoPolicy 'reject'/);
		expect(reason).toMatch(/High profile/);
		await pub.ffmpeg.exited;
		expect(s.routers.producers('refused')).toHaveLength(0);
		// A stream the policy accepts still goes through on the same server.
		publishFromFfmpeg(s.registry, 'accepted', { profile: 'baseline', audio: false });
		const session = await liveSession(s, 'accepted', 1);
		expect(session.videoPath).toBe('passthrough');
	});

	it('passes an OBS-like stream through under a per-stream passthrough override', async () => {
		const s = await start({ streams: { videoPolicyOverrides: { raw: 'passthrough' } } });
		publishFromFfmpeg(s.registry, 'raw', OBS_LIKE);
		const session = await liveSession(s, 'raw');
		expect(session.videoPath).toBe('passthrough');
		const info = await streamInfo(s, 'raw');
		expect(info.webrtc.videoProfileLevelId).toMatch(/^6400/);
		expect(info.webrtc.reason).toMatch(/passthrough/);
		const video = await probe(s, 'raw', 'video');
		const result = await decodeProbes(video, null, 2);
		expect(decodeErrors(result.stderr)).toEqual([]);
		expect(result.width).toBe(640);
		expect(result.videoFrames).toBeGreaterThanOrEqual(30);
		expect(session.videoTranscoder).toBeNull();
	});

	it('answers a keyframe request on a transcoded stream long before the next scheduled keyframe', async () => {
		const s = await start({ streams: { transcode: { keyframeIntervalMs: 30_000 }, keyframeRequestMinIntervalMs: 300 } });
		publishFromFfmpeg(s.registry, 'kf', { ...OBS_LIKE, audio: false });
		const session = await liveSession(s, 'kf', 1);
		await steady(session);
		const video = await probe(s, 'kf', 'video');
		// A new consumer makes mediasoup ask for a keyframe: the first one comes quickly.
		await eventually(() => video.idrTimes.length >= 1, 15_000);
		// Then none for a while: the transcoder's GOP is 30 s.
		await new Promise((r) => setTimeout(r, 1000));
		const quiet = video.idrTimes.length;
		await new Promise((r) => setTimeout(r, 2500));
		const before = video.idrTimes.length;
		expect(before).toBe(quiet);
		const packetsBefore = video.packets;
		const forcedBefore = session.stats().video.keyframesForced;
		const requestsBefore = session.stats().video.pli + session.stats().video.fir;
		expect(video.packets).toBeGreaterThan(30);
		const asked = performance.now();
		await video.consumer.requestKeyFrame();
		await eventually(() => video.idrTimes.length > before, 10_000);
		const latency = video.idrTimes[before]! - asked;
		expect(latency).toBeLessThan(10_000); // vs 30 s to the next scheduled keyframe
		expect(video.packets).toBeGreaterThan(packetsBefore);
		const stats = session.stats();
		expect(stats.video.pli + stats.video.fir).toBeGreaterThan(requestsBefore);
		expect(stats.video.keyframesForced).toBeGreaterThan(forcedBefore);
		expect(stats.videoTranscoder!.keyframesForced).toBeGreaterThanOrEqual(1);
		expect(session.info().keyframeRequests.forced).toBe(stats.video.keyframesForced);
	});

	it('counts keyframe requests it cannot honour on a passthrough stream', async () => {
		const s = await start();
		publishFromFfmpeg(s.registry, 'pt', { profile: 'baseline', audio: false });
		const session = await liveSession(s, 'pt', 1);
		const video = await probe(s, 'pt', 'video');
		await video.consumer.requestKeyFrame();
		await eventually(() => session.stats().video.keyframeRequestsNotHonoured >= 1, 10_000);
		expect(session.stats().video.keyframesForced).toBe(0);
	});

	it('passes keyframe requests on a passthrough plain-RTP stream to the sender, and Opus through untouched', async () => {
		const s = await start({ rtpIngest: { listenIp: '127.0.0.1' } });
		const { status, body } = await postRtp(s, 'rtpkf');
		expect(status).toBe(201);
		runFfmpeg(ffmpegRtpArgs(body));
		const session = await liveSession(s, 'rtpkf');
		expect(session.audioPath).toBe('opus-passthrough');
		expect(session.opusTranscoder).toBeNull();
		const video = await probe(s, 'rtpkf', 'video');
		await eventually(() => video.packets > 10, 15_000);
		await video.consumer.requestKeyFrame();
		await eventually(() => session.stats().video.keyframeRequestsForwarded >= 1, 10_000);
		expect(s.rtpIngest!.session('rtpkf')!.stats().video.keyframeRequestsSent).toBeGreaterThanOrEqual(1);
	});

	it('recovers when the Opus and video transcoders are killed, and leaves no ffmpeg behind', async () => {
		const s = await start();
		publishFromFfmpeg(s.registry, 'crash', OBS_LIKE);
		const session = await liveSession(s, 'crash');
		await steady(session);
		const video = await probe(s, 'crash', 'video');
		const audio = await probe(s, 'crash', 'audio');
		await eventually(() => video.packets > 50 && audio.packets > 50, 20_000);
		const opusPid = session.opusTranscoder!.pid!;
		const { decoder, encoders } = session.videoTranscoder!.pids();
		for (const pid of [opusPid, decoder!, ...encoders]) process.kill(pid, 'SIGKILL');
		const v0 = video.packets;
		const a0 = audio.packets;
		const idr0 = video.idrTimes.length;
		await eventually(() => session.stats().transcoderRestarts >= 3, 15_000);
		// Media flows again, starting with a keyframe.
		await eventually(() => video.packets > v0 + 50 && audio.packets > a0 + 100 && video.idrTimes.length > idr0, 45_000);
		expect(session.opusTranscoder!.pid).not.toBe(opusPid);
		expect(session.videoTranscoder!.pids().decoder).not.toBe(decoder);
		expect(ffmpegChildren().length).toBeGreaterThan(0);
		await stopAllFfmpeg();
		await s.close();
		server = null;
		await eventually(() => ffmpegChildren().length === 0, 5000);
	});

	it('works over real RTMP: an OBS-like publisher reaches a consumer, decodable', async () => {
		const s = (server = await startTestServer());
		runFfmpeg([...testSourceArgs(OBS_LIKE), '-f', 'flv', `rtmp://127.0.0.1:${s.rtmp!.port}/live/overrtmp`]);
		const session = await liveSession(s, 'overrtmp');
		expect(session.publication.protocol).toBe('rtmp');
		expect(session.videoPath).toBe('transcode');
		await steady(session);
		const video = await probe(s, 'overrtmp', 'video');
		const audio = await probe(s, 'overrtmp', 'audio');
		const result = await decodeProbes(video, audio, 3);
		expect(decodeErrors(result.stderr)).toEqual([]);
		expect(result).toMatchObject({ width: 640, height: 360, sampleRate: 48000, channels: 'stereo' });
		expect(result.videoFrames).toBeGreaterThanOrEqual(20);
		expect(result.audioFrames).toBeGreaterThanOrEqual(100);
		// The encoder disconnecting ends the stream and its producers.
		await stopAllFfmpeg();
		await eventually(() => s.routers.producers('overrtmp').length === 0, 10_000);
		expect(s.bridge!.session('overrtmp')).toBeUndefined();
	});

	it('rebuilds the producers on a new origin router when the origin worker dies', async () => {
		const s = await start();
		publishFromFfmpeg(s.registry, 'phoenix', { profile: 'baseline' });
		const session = await liveSession(s, 'phoenix');
		const old = [...s.routers.producers('phoenix')];
		const { worker } = (await s.routers.origin('phoenix')).slot;
		const lost = waitFor(s.routers, 'routerLost', 10_000, (name) => name === 'phoenix');
		const ready = waitFor(s.routers, 'ready', 30_000, (name, producers) => name === 'phoenix' && producers.every((p) => !old.includes(p)));
		process.kill(worker.pid, 'SIGKILL');
		const [, , origin] = await lost;
		expect(origin).toBe(true);
		const [, fresh] = await ready;
		expect(fresh.map((p) => p.kind).sort()).toEqual(['audio', 'video']);
		expect(s.bridge!.session('phoenix')).toBe(session);
		// Same SSRCs, so viewers that re-consume see one continuous stream.
		expect(fresh.find((p) => p.kind === 'video')!.rtpParameters.encodings![0]!.ssrc).toBe(session.ssrcs.video);
		const video = await probe(s, 'phoenix', 'video');
		const audio = await probe(s, 'phoenix', 'audio');
		await eventually(() => video.idrTimes.length > 0 && audio.packets > 50, 20_000);
	});

	it('gives a new publisher new producers on the same router, and cleans up when it stops', async () => {
		const s = await start();
		const first = publishFromFfmpeg(s.registry, 'swap', { profile: 'baseline', audio: false });
		await liveSession(s, 'swap', 1);
		const router = (await s.routers.origin('swap')).router;
		const oldProducer = s.routers.producers('swap')[0]!;
		const gone = waitFor(s.routers, 'gone', 10_000);
		const ready = waitFor(s.routers, 'ready', 20_000, (name, producers) => name === 'swap' && !producers.includes(oldProducer));
		const second = publishFromFfmpeg(s.registry, 'swap', { profile: 'baseline', audio: false });
		await gone;
		await ready;
		expect(oldProducer.closed).toBe(true);
		expect((await s.routers.origin('swap')).router).toBe(router);
		expect(s.bridge!.session('swap')!.publication).toBe(second.publication);
		await first.ffmpeg.exited;
		const goneAgain = waitFor(s.routers, 'gone', 10_000);
		await second.stop();
		await goneAgain;
		expect(s.routers.producers('swap')).toHaveLength(0);
		expect(s.bridge!.session('swap')).toBeUndefined();
	});
});
