import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../server/common/emitter.js';
import type { AudioFrame, VideoFrame } from '../../server/core/media.js';
import type { Publication } from '../../server/core/stream.js';
import type { Server } from '../../server/server.js';
import { runFfmpeg, stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { deleteRtp, ffmpegRtpArgs, postRtp, streamInfo } from './helpers.js';

function median(xs: number[]): number {
	const s = [...xs].sort((a, b) => a - b);
	return s[s.length >> 1] ?? NaN;
}

describe('RTP ingest from ffmpeg -f rtp', () => {
	let server: Server;
	beforeAll(async () => {
		server = await startTestServer({ rtpIngest: { listenIp: '127.0.0.1' } });
	});
	afterEach(async () => {
		await stopAllFfmpeg();
	});
	afterAll(async () => {
		await server.close();
	});

	it('goes live with H.264 and Opus on one timeline, and DELETE ends it', async () => {
		const publishes = waitFor(server.registry, 'publish', 10_000, (s) => s.name === 'ff1');
		const { status, body } = await postRtp(server, 'ff1');
		expect(status).toBe(201);
		expect(body.video).toMatchObject({ ip: '127.0.0.1', payloadType: 96, codec: 'H264' });
		expect(body.audio).toMatchObject({ ip: '127.0.0.1', payloadType: 111, codec: 'opus' });
		expect(body.video.port).not.toBe(body.audio.port);
		const [, pub] = await publishes;

		const video: VideoFrame[] = [];
		const audio: AudioFrame[] = [];
		pub.on('video', (f) => video.push(f));
		pub.on('audio', (f) => audio.push(f));
		const ff = runFfmpeg(ffmpegRtpArgs(body));
		await eventually(() => video.length >= 60 && audio.length >= 100, 20_000);

		const info = await streamInfo(server, 'ff1');
		expect(info).toMatchObject({
			name: 'ff1',
			live: true,
			video: { codec: 'h264', width: 640, height: 360, profile: 'Constrained Baseline' },
			audio: { codec: 'opus', sampleRate: 48000, channels: 2 },
		});
		expect(info.rtp?.senders.video).toMatch(/^127\.0\.0\.1:\d+$/);
		expect(info.rtp?.synced).toEqual({ video: true, audio: true });

		expect(video[0]!.keyframe).toBe(true);
		const keyframes = video.filter((f) => f.keyframe).length;
		expect(keyframes).toBeGreaterThanOrEqual(2);
		for (let i = 1; i < video.length; i++) {
			expect(video[i]!.dts).toBeGreaterThan(video[i - 1]!.dts);
			expect(video[i]!.pts).toBe(video[i]!.dts);
		}
		for (let i = 1; i < audio.length; i++) expect(audio[i]!.pts).toBeGreaterThan(audio[i - 1]!.pts);
		// 25 fps and 20 ms Opus frames on the 90 kHz and 48 kHz clocks.
		expect(median(video.slice(1).map((f, i) => f.pts - video[i]!.pts))).toBeCloseTo(40, 0);
		expect(median(audio.slice(1).map((f, i) => f.pts - audio[i]!.pts))).toBeCloseTo(20, 0);
		// No parameter sets or delimiters inside frames: they travel as config.
		for (const f of video) for (const n of f.nalus) expect([7, 8, 9]).not.toContain(n[0]! & 0x1f);

		// Both are produced in real time: a frame's timeline position minus its
		// arrival is the same for audio and video when the timelines line up.
		const lag = (fs: { pts: number; receivedAt: number }[]): number => median(fs.slice(-50).map((f) => f.receivedAt - f.pts));
		expect(Math.abs(lag(video) - lag(audio))).toBeLessThan(60);

		const del = await deleteRtp(server, 'ff1');
		expect(del.status).toBe(204);
		expect(pub.ended).toBe(true);
		expect(server.registry.get('ff1')?.live).toBe(false);
		expect((await fetch(`${baseUrl(server)}/api/streams/ff1`)).status).toBe(404);
		expect(server.rtpIngest?.session('ff1')).toBeUndefined();
		await ff.stop();
	});

	it('lets a second POST take over a live stream', async () => {
		const first = await postRtp(server, 'ff2');
		expect(first.status).toBe(201);
		const firstPub = server.registry.get('ff2')!.publication!;
		const ff1 = runFfmpeg(ffmpegRtpArgs(first.body, { width: 320, height: 180 }));
		await waitFor(firstPub, 'video', 20_000);

		const second = await postRtp(server, 'ff2');
		expect(second.status).toBe(201);
		expect(firstPub.ended).toBe(true);
		const secondPub: Publication = server.registry.get('ff2')!.publication!;
		expect(secondPub).not.toBe(firstPub);
		expect(second.body.video.port).not.toBe(first.body.video.port);
		const ff2 = runFfmpeg(ffmpegRtpArgs(second.body, { width: 480, height: 270 }));
		await waitFor(secondPub, 'video', 20_000);
		const info = await streamInfo(server, 'ff2');
		expect(info.video).toMatchObject({ width: 480, height: 270 });
		expect(server.rtpIngest?.sessions().filter((s) => s.stream === 'ff2')).toHaveLength(1);
		await ff1.stop();
		await ff2.stop();
		expect((await deleteRtp(server, 'ff2')).status).toBe(204);
	});

	it('takes the SSRC the sender uses when it cannot set ours', async () => {
		const { body } = await postRtp(server, 'ff3');
		const pub = server.registry.get('ff3')!.publication!;
		const ff = runFfmpeg(ffmpegRtpArgs(body, { width: 320, height: 180, ssrc: false }));
		await waitFor(pub, 'video', 20_000);
		await eventually(() => pub.audio !== null, 10_000);
		await ff.stop();
		expect((await deleteRtp(server, 'ff3')).status).toBe(204);
	});
});
