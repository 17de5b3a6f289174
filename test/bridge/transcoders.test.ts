import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { FlvReader } from '../../ingest/bridge/flv.js';
import { OPUS_LOWDELAY_LOOKAHEAD, OpusTranscoder } from '../../ingest/bridge/opus-transcoder.js';
import type { OpusPacket } from '../../ingest/bridge/opus-transcoder.js';
import { VideoTranscoder } from '../../ingest/bridge/video-transcoder.js';
import { FLV_TAG, FlvDemuxer } from '../../ingest/rtmp/flv.js';
import { NAL, nalType } from '../../server/core/codecs/h264.js';
import type { AacConfig } from '../../server/core/codecs/audio.js';
import type { AudioFrame, VideoConfig, VideoFrame } from '../../server/core/media.js';
import { runFfmpeg, stopAllFfmpeg, testSourceArgs } from '../helpers/ffmpeg.js';
import type { TestSourceOptions } from '../helpers/ffmpeg.js';
import { eventually, testLogger } from '../helpers/server.js';

/** Frames of an ffmpeg test source, as the stream core would carry them. */
function source(opts: TestSourceOptions, on: { video?: (f: VideoFrame, c: VideoConfig) => void; audio?: (f: AudioFrame, c: AacConfig) => void }): void {
	const ff = runFfmpeg([...testSourceArgs(opts), '-f', 'flv', 'pipe:1'], { stdout: 'pipe' });
	const demux = new FlvDemuxer();
	let now = 0;
	const reader = new FlvReader((tag) => {
		if (tag.type === FLV_TAG.VIDEO) {
			const ev = demux.video(tag.timestamp, tag.body, now);
			if (ev.type === 'video') on.video?.(ev.frame, demux.videoConfig!);
		} else if (tag.type === FLV_TAG.AUDIO) {
			const ev = demux.audio(tag.timestamp, tag.body, now);
			if (ev.type === 'audio') on.audio?.(ev.frame, demux.audioConfig!);
		}
	});
	ff.child.stdout?.on('data', (c: Buffer) => {
		now = performance.now();
		reader.push(c);
	});
}

describe('transcoders', () => {
	const closers: (() => Promise<void>)[] = [];
	afterEach(async () => {
		await stopAllFfmpeg();
		for (const c of closers.splice(0)) await c();
	});

	it('video: B-frames in, Constrained Baseline out, the publisher times kept, an IDR on request', async () => {
		let t: VideoTranscoder | null = null;
		const inPts = new Set<number>();
		const out: { frame: VideoFrame; config: VideoConfig }[] = [];
		source({ profile: 'high', bframes: 2, audio: false, fps: 25 }, {
			video: (f, c) => {
				if (!t) {
					t = VideoTranscoder.create({ ffmpegPath: 'ffmpeg', logger: testLogger(), input: c, fps: 25, preset: 'ultrafast', bitrateKbps: 0, keyframeIntervalMs: 60_000 });
					closers.push(() => t!.close());
					t.on('frame', (frame, config) => out.push({ frame, config }));
				}
				inPts.add(f.pts);
				t.push(f);
			},
		});
		await eventually(() => out.length >= 40, 30_000);
		const first = out[0]!;
		expect(first.frame.keyframe).toBe(true);
		expect(first.frame.nalus.some((n) => nalType(n) === NAL.IDR)).toBe(true);
		expect(first.config.profile).toBe('Constrained Baseline');
		expect(first.config.maxReorderFrames ?? 0).toBe(0);
		expect(first.config.width).toBe(640);
		for (let i = 1; i < out.length; i++) {
			expect(out[i]!.frame.pts).toBeGreaterThan(out[i - 1]!.frame.pts);
			expect(out[i]!.frame.dts).toBe(out[i]!.frame.pts);
		}
		// Every output time is a publisher time: nothing re-timed.
		for (const o of out) expect(inPts.has(o.frame.pts)).toBe(true);
		// The GOP is a minute long; only a request makes another IDR.
		const keyframesBefore = out.filter((o) => o.frame.keyframe).length;
		const n = out.length;
		t!.requestKeyframe();
		await eventually(() => out.slice(n).some((o) => o.frame.keyframe), 10_000);
		const idrAt = out.slice(n).findIndex((o) => o.frame.keyframe);
		expect(idrAt).toBeLessThan(10); // within a few frames of the request
		expect(out.filter((o) => o.frame.keyframe).length).toBe(keyframesBefore + 1);
		expect(t!.stats.keyframesForced).toBe(1);
		expect(t!.stats.encodersStarted).toBe(3);
		const pts = out.map((o) => o.frame.pts);
		expect(new Set(pts).size).toBe(pts.length);
		const stages = t!.stageDelays();
		expect(stages.decode.count).toBeGreaterThan(0);
		expect(stages.encode.count).toBeGreaterThan(0);
	});

	it('audio: AAC in, Opus out, each packet stamped with the publisher time of its first sample', async () => {
		let t: OpusTranscoder | null = null;
		const input: AudioFrame[] = [];
		const packets: OpusPacket[] = [];
		source({ audio: true, audioRate: 44100, audioChannels: 1, fps: 10, width: 160, height: 90 }, {
			audio: (f, c) => {
				if (!t) {
					t = OpusTranscoder.create({ ffmpegPath: 'ffmpeg', logger: testLogger(), config: c, bitrate: 64000 });
					closers.push(() => t!.close());
					t.on('packet', (p) => packets.push(p));
				}
				input.push(f);
				t.push(f);
			},
		});
		await eventually(() => packets.length >= 200, 30_000);
		const first = packets[0]!;
		// The first packet starts the encoder's look-ahead before the first input sample.
		expect(first.pts).toBeCloseTo(input[0]!.pts - (OPUS_LOWDELAY_LOOKAHEAD / 48000) * 1000, 3);
		for (let i = 1; i < packets.length; i++) {
			expect(packets[i]!.samples).toBe(480); // 10 ms frames
			expect(packets[i]!.pts - packets[i - 1]!.pts).toBeCloseTo(10, 3);
		}
		// Packets follow the input's clock: 200 packets are 2 s of the publisher's time.
		const last = packets[packets.length - 1]!;
		expect(last.pts - first.pts).toBeCloseTo((packets.length - 1) * 10, 3);
		expect(t!.stats.packetsLost).toBe(0);
		expect(t!.stats.framesIn).toBe(input.length);
	});
});
