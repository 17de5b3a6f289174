import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MARK_PERIOD_MS, MarkDetector, fillMarkPcm, markCaptureTime } from '../../bench/probe/audio-marks.js';
import { ProbePublisher } from '../../bench/probe/publisher.js';
import { readTimecodeFromLuma } from '../../bench/probe/timecode.js';
import { aacFrameTag, aacSequenceHeaderTag, flvHeader } from '../../ingest/bridge/index.js';
import type { AudioConfig } from '../../server/core/codecs/audio.js';
import { toAnnexB } from '../../server/core/codecs/h264.js';
import type { AudioFrame, VideoConfig, VideoFrame } from '../../server/core/media.js';
import type { Server } from '../../server/server.js';
import { ffmpegFilter } from '../helpers/ffmpeg.js';
import { startTestServer } from '../helpers/server.js';


function pcmMono(s16: Buffer): Float32Array {
	const out = new Float32Array(s16.length / 2);
	for (let i = 0; i < out.length; i++) out[i] = s16.readInt16LE(i * 2) / 32768;
	return out;
}

describe('audio marks', () => {
	it('finds every burst of generated PCM at its capture instant', () => {
		const rate = 48000;
		const start = 1_795_000_000_137.25;
		const frames = rate * 3;
		const pcm = new Int16Array(frames * 2);
		fillMarkPcm(pcm, frames, start, rate);
		const mono = new Float32Array(frames);
		for (let i = 0; i < frames; i++) mono[i] = (pcm[2 * i] ?? 0) / 32768;
		const det = new MarkDetector(rate);
		// Odd chunk sizes: the detector keeps its state across them.
		const onsets = [];
		for (let off = 0; off < frames; off += 777) onsets.push(...det.push(mono.subarray(off, off + 777)));
		expect(onsets.length).toBe(6);
		for (const o of onsets) {
			const heard = start + (o.sample * 1000) / rate;
			const mark = markCaptureTime(o.tone, heard + 30);
			expect(mark % MARK_PERIOD_MS).toBe(0);
			// The onset is the first sample over the threshold: within a fraction of a period of the true start.
			expect(Math.abs(heard - mark)).toBeLessThan(0.25);
		}
	});
});

/**
 * What the issue asks of the probe: on the wire (what the server's RTMP
 * ingest reads), each track's timestamps are its capture times. Video: the
 * time drawn in each picture. Audio: the capture instants of the bursts, found
 * in the decoded AAC.
 */
describe('probe publisher stamps both tracks from one capture clock', () => {
	let server: Server;
	const video: VideoFrame[] = [];
	const audio: AudioFrame[] = [];
	let audioConfig: AudioConfig | null = null;
	let videoConfig: VideoConfig | null = null;
	let base = 0;
	const width = 640;
	const height = 360;

	beforeAll(async () => {
		server = await startTestServer({ streams: { videoPolicy: 'passthrough' } });
		server.registry.on('publish', (_stream, pub) => {
			pub.on('video', (f) => video.push(f));
			pub.on('audio', (f) => audio.push(f));
			pub.on('audioConfig', (c) => (audioConfig = c));
			pub.on('videoConfig', (c) => (videoConfig = c));
		});
		const pub = await ProbePublisher.create({
			targets: [{ kind: 'rtmp', url: `rtmp://127.0.0.1:${server.rtmp!.port}/live/wire` }],
			width,
			height,
			bitrateKbps: 1200,
		});
		base = pub.rtmpBaseMs;
		await new Promise((r) => setTimeout(r, 4000));
		await pub.close();
		expect(pub.error).toBeNull();
	}, 30_000);

	afterAll(async () => {
		await server?.close();
	});

	it('video timestamps are the capture times in the pictures, gaps included', async () => {
		expect(video.length).toBeGreaterThan(60);
		const params: VideoConfig | null = videoConfig;
		if (!params) throw new Error('no video configuration');
		const annexB = Buffer.concat([toAnnexB([...params.sps, ...params.pps]), ...video.map((f) => toAnnexB(f.nalus))]);
		const gray = await ffmpegFilter(['-f', 'h264', '-i', 'pipe:0', '-f', 'rawvideo', '-pix_fmt', 'gray', 'pipe:1'], annexB);
		const size = width * height;
		expect(gray.length).toBe(size * video.length);
		const errors: number[] = [];
		video.forEach((f, i) => {
			const code = readTimecodeFromLuma(gray.subarray(i * size, (i + 1) * size), width, height);
			if (code) errors.push(f.pts + base - code.timeMs);
		});
		expect(errors.length).toBeGreaterThan(video.length * 0.95);
		// RTMP timestamps are whole milliseconds.
		for (const e of errors) expect(Math.abs(e)).toBeLessThanOrEqual(1);
	}, 30_000);

	it('audio timestamps put every burst at its capture instant, within 10 ms', async () => {
		expect(audioConfig?.codec).toBe('aac');
		const cfg = audioConfig as Extract<AudioConfig, { codec: 'aac' }>;
		const first = audio[0] as AudioFrame;
		// The frames as an FLV file; ffmpeg decodes them in order, one sample stream.
		const flv = Buffer.concat([flvHeader(false, true), aacSequenceHeaderTag(0, cfg.asc), ...audio.map((f) => aacFrameTag(f.pts - first.pts, f.data))]);
		const pcm = pcmMono(await ffmpegFilter(['-f', 'flv', '-i', 'pipe:0', '-f', 's16le', '-ac', '1', '-ar', '48000', 'pipe:1'], flv));
		// Whole-ms RTMP stamps of 21.33 ms frames: the stream must be continuous for the count to hold.
		for (let i = 1; i < audio.length; i++) expect(Math.abs((audio[i] as AudioFrame).pts - (audio[i - 1] as AudioFrame).pts - 1024 / 48)).toBeLessThan(1.5);
		const onsets = new MarkDetector(48000).push(pcm);
		expect(onsets.length).toBeGreaterThanOrEqual(6);
		for (const o of onsets) {
			const stamped = base + first.pts + (o.sample * 1000) / 48000;
			const mark = markCaptureTime(o.tone, stamped + 100);
			expect(Math.abs(stamped - mark)).toBeLessThan(10);
		}
	});
});
