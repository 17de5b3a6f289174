import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAudioSpecificConfig, parseAudioSpecificConfig } from '../../server/core/codecs/audio.js';
import type { AudioFrame, VideoConfig, VideoFrame } from '../../server/core/media.js';
import { AUDIO_TRACK_ID, VIDEO_TRACK_ID } from '../../server/hls/fmp4.js';
import { Fragmenter } from '../../server/hls/fragmenter.js';
import type { FragmenterEpoch, FragmenterOptions, FragmenterPart } from '../../server/hls/fragmenter.js';
import { stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { encodeClip } from './helpers/frames.js';
import { readFragments } from './helpers/mp4.js';

const aac = parseAudioSpecificConfig(buildAudioSpecificConfig(48000, 2));
const aacMono = parseAudioSpecificConfig(buildAudioSpecificConfig(44100, 1));

export function vframe(dts: number, key: boolean, opts: { cts?: number; size?: number } = {}): VideoFrame {
	const nal = Buffer.concat([Buffer.from([key ? 0x65 : 0x41]), randomBytes(opts.size ?? 50)]);
	return { kind: 'video', dts, pts: dts + (opts.cts ?? 0), keyframe: key, nalus: [nal], receivedAt: dts };
}

export function aframe(pts: number, size = 20): AudioFrame {
	return { kind: 'audio', pts, data: randomBytes(size), receivedAt: pts };
}

interface Run {
	f: Fragmenter;
	parts: FragmenterPart[];
	epochs: FragmenterEpoch[];
	/** Parts per segment. */
	segments: FragmenterPart[][];
}

function run(opts: Partial<FragmenterOptions> = {}): Run {
	const f = new Fragmenter({ partTargetMs: 250, segmentTargetMs: 1000, ...opts });
	const r: Run = { f, parts: [], epochs: [], segments: [] };
	let current: FragmenterPart[] = [];
	f.on('epoch', (e) => r.epochs.push(e));
	f.on('part', (p) => {
		r.parts.push(p);
		current.push(p);
	});
	f.on('segmentEnd', () => {
		r.segments.push(current);
		current = [];
	});
	return r;
}

/** Decode times and durations of one track across parts, in that track's ticks. */
function trackTimeline(parts: FragmenterPart[], trackId: number): { start: number; end: number; samples: number }[] {
	const out: { start: number; end: number; samples: number }[] = [];
	for (const p of parts) {
		for (const frag of readFragments(p.data)) {
			for (const t of frag.tracks) {
				if (t.trackId !== trackId) continue;
				const dur = t.samples.reduce((a, s) => a + (s.duration ?? 0), 0);
				out.push({ start: t.baseMediaDecodeTime, end: t.baseMediaDecodeTime + dur, samples: t.samples.length });
			}
		}
	}
	return out;
}

const segDuration = (s: FragmenterPart[]): number => s.reduce((a, p) => a + p.durationMs, 0);

describe('Fragmenter', () => {
	let video: VideoConfig;
	let video2: VideoConfig;
	beforeAll(async () => {
		video = (await encodeClip({ duration: 0.2, audio: false })).video;
		video2 = (await encodeClip({ duration: 0.2, audio: false, width: 320, height: 180 })).video;
	});
	afterAll(() => stopAllFfmpeg());

	it('cuts parts within the part target and segments at the first keyframe past the segment target', () => {
		const r = run();
		r.f.setVideoConfig(video);
		r.f.setAudioConfig(aac);
		for (let i = 0; i < 25 * 5; i++) {
			r.f.pushVideo(vframe(i * 40, i % 25 === 0));
			// AAC frames of 21.333 ms with millisecond timestamps, as FLV carries them.
			while (r.f.stats.audioFrames * (1024 / 48) < (i + 1) * 40) r.f.pushAudio(aframe(Math.round(r.f.stats.audioFrames * (1024 / 48))));
		}
		r.f.finish();
		expect(r.epochs).toHaveLength(1);
		expect(r.segments).toHaveLength(5);
		for (const seg of r.segments) {
			expect(segDuration(seg)).toBeCloseTo(1000, 6);
			expect(seg[0]!.independent).toBe(true);
			expect(seg[0]!.segmentStart).toBe(true);
			expect(seg.slice(1).every((p) => !p.independent && !p.segmentStart)).toBe(true);
			for (const p of seg) expect(p.durationMs).toBeLessThanOrEqual(250);
		}
		// Audio stays on one continuous sample clock despite the rounded timestamps.
		const audio = trackTimeline(r.parts, AUDIO_TRACK_ID);
		for (let i = 1; i < audio.length; i++) expect(audio[i]!.start).toBe(audio[i - 1]!.end);
		const videoT = trackTimeline(r.parts, VIDEO_TRACK_ID);
		for (let i = 1; i < videoT.length; i++) expect(videoT[i]!.start).toBe(videoT[i - 1]!.end);
		expect(videoT.reduce((a, t) => a + t.samples, 0)).toBe(125);
	});

	it('makes segments as long as the GOP when keyframes are rarer than the target', () => {
		const r = run();
		r.f.setVideoConfig(video);
		for (let i = 0; i <= 30 * 9; i++) r.f.pushVideo(vframe(i * (100 / 3), i % 90 === 0));
		r.f.finish();
		expect(r.segments.map((s) => Math.round(segDuration(s)))).toEqual([3000, 3000, 3000, 33]);
		for (const p of r.parts) expect(p.durationMs).toBeLessThanOrEqual(250);
	});

	it('waits for the first keyframe past the target when the GOP is shorter', () => {
		const r = run();
		r.f.setVideoConfig(video);
		for (let i = 0; i < 25 * 4; i++) r.f.pushVideo(vframe(i * 40, i % 15 === 0));
		r.f.finish();
		// Keyframes every 600 ms: segments end at 1200, 2400, 3600.
		expect(r.segments.slice(0, 3).map((s) => Math.round(segDuration(s)))).toEqual([1200, 1200, 1200]);
	});

	it('drops frames before the first keyframe and keeps B-frame offsets', () => {
		const r = run();
		r.f.setVideoConfig(video);
		r.f.pushVideo(vframe(0, false));
		r.f.pushVideo(vframe(40, false));
		// I P B B pattern: pts - dts of 80, 120, 0, 0 ms.
		const ctsPattern = [80, 120, 0, 0];
		for (let i = 0; i < 50; i++) r.f.pushVideo(vframe(80 + i * 40, i % 25 === 0, { cts: ctsPattern[i % 4] }));
		r.f.finish();
		expect(r.f.stats.droppedVideo).toBe(2);
		const samples = r.parts.flatMap((p) => readFragments(p.data)[0]!.tracks[0]!.samples);
		expect(samples).toHaveLength(50);
		samples.forEach((s, i) => expect(s.cto).toBe((ctsPattern[i % 4] ?? 0) * 90));
		expect(trackTimeline(r.parts, VIDEO_TRACK_ID)[0]!.start).toBe(80 * 90);
	});

	it('starts a new epoch at the next keyframe when the configuration changes, on the same clock', () => {
		const r = run();
		r.f.setVideoConfig(video);
		r.f.setAudioConfig(aac);
		for (let i = 0; i < 60; i++) {
			if (i === 30) r.f.setVideoConfig(video2);
			r.f.pushVideo(vframe(i * 40, i % 25 === 0));
			r.f.pushAudio(aframe(i * 40));
		}
		r.f.finish();
		expect(r.epochs.map((e) => e.tracks.video?.width)).toEqual([640, 320]);
		// Frames 30..49 still went to the first epoch; the switch is at frame 50's keyframe.
		expect(r.epochs[1]!.startMs).toBe(2000);
		const videoT = trackTimeline(r.parts, VIDEO_TRACK_ID);
		for (let i = 1; i < videoT.length; i++) expect(videoT[i]!.start).toBe(videoT[i - 1]!.end);
	});

	it('keeps media time monotonic across a new publisher and a clock jump', () => {
		const r = run();
		r.f.setVideoConfig(video);
		r.f.setAudioConfig(aac);
		for (let i = 0; i < 50; i++) {
			r.f.pushVideo(vframe(10_000 + i * 40, i % 25 === 0));
			r.f.pushAudio(aframe(10_000 + i * 40));
		}
		r.f.finish(); // publisher gone
		r.f.setAudioConfig(aacMono);
		for (let i = 0; i < 50; i++) {
			r.f.pushVideo(vframe(i * 40, i % 25 === 0)); // a new publisher starts at 0
			r.f.pushAudio(aframe(i * 40));
		}
		for (let i = 0; i < 30; i++) r.f.pushVideo(vframe(3_600_000 + i * 40, i % 25 === 0)); // an hour ahead
		r.f.finish();
		expect(r.epochs).toHaveLength(3);
		expect(r.epochs[1]!.startMs).toBeCloseTo(12_000, 6);
		expect(r.epochs[2]!.startMs).toBeCloseTo(14_000, 6);
		const videoT = trackTimeline(r.parts, VIDEO_TRACK_ID);
		for (let i = 1; i < videoT.length; i++) expect(videoT[i]!.start).toBeGreaterThanOrEqual(videoT[i - 1]!.end);
		const audioParts = r.parts.map((p) => readFragments(p.data)[0]!.tracks.find((t) => t.trackId === AUDIO_TRACK_ID));
		const audioStartsMs = audioParts.flatMap((t, i) => (t ? [(t.baseMediaDecodeTime * 1000) / (r.parts[i]!.epoch === 0 ? 48000 : 44100)] : []));
		for (let i = 1; i < audioStartsMs.length; i++) expect(audioStartsMs[i]!).toBeGreaterThan(audioStartsMs[i - 1]!);
	});

	it('snaps jittery audio to its sample clock, keeps real gaps and drops overlaps', () => {
		const r = run();
		r.f.setVideoConfig(video);
		r.f.setAudioConfig(aac);
		const frameMs = 1024 / 48;
		let n = 0;
		for (let i = 0; i < 100; i++) {
			r.f.pushVideo(vframe(i * 40, i % 25 === 0));
			while (n * frameMs < (i + 1) * 40) {
				const pts = n * frameMs + (n % 3) - 1; // +-1 ms of jitter
				if (n < 80 || n > 103) r.f.pushAudio(aframe(pts)); // frames 80..103 lost: a 512 ms gap
				if (n === 120) r.f.pushAudio(aframe(pts)); // a duplicate
				n++;
			}
		}
		r.f.finish();
		expect(r.f.stats.droppedAudio).toBe(1);
		const samples = r.parts.flatMap((p) =>
			readFragments(p.data)[0]!.tracks.filter((t) => t.trackId === AUDIO_TRACK_ID).flatMap((t) => {
				let at = t.baseMediaDecodeTime;
				return t.samples.map((s) => {
					const start = at;
					at += s.duration ?? 0;
					return start;
				});
			}),
		);
		expect(samples).toHaveLength(n - 24);
		// Back to back on the 1024-sample grid, except across the gap, which keeps its length
		// (give or take the jitter of the frame that ends it).
		for (let i = 1; i < samples.length; i++) {
			if (i === 80) expect(Math.abs(samples[i]! - samples[i - 1]! - 1024 * 25)).toBeLessThanOrEqual(48);
			else expect(samples[i]! - samples[i - 1]!).toBe(1024);
		}
	});

	it('holds a publication’s first keyframe briefly for audio that starts later', () => {
		const r = run();
		r.f.setVideoConfig(video);
		for (let i = 0; i < 5; i++) r.f.pushVideo(vframe(i * 40, i === 0));
		expect(r.epochs).toHaveLength(0);
		r.f.setAudioConfig(aac); // e.g. the first RTP audio packet, 200 ms in
		expect(r.epochs).toHaveLength(1);
		expect(r.epochs[0]!.tracks.audio).not.toBeNull();
		for (let i = 5; i < 60; i++) {
			r.f.pushVideo(vframe(i * 40, i % 25 === 0));
			r.f.pushAudio(aframe(i * 40));
		}
		r.f.finish();
		expect(r.epochs).toHaveLength(1);
		expect(trackTimeline(r.parts, VIDEO_TRACK_ID).reduce((a, t) => a + t.samples, 0)).toBe(60);

		// With no audio at all, video goes out alone after the wait.
		const v = run({ audioWaitMs: 300 });
		v.f.setVideoConfig(video);
		for (let i = 0; i < 7; i++) v.f.pushVideo(vframe(i * 40, i === 0));
		expect(v.epochs).toHaveLength(0);
		v.f.pushVideo(vframe(8 * 40, false)); // 320 ms after the keyframe: past the wait
		expect(v.epochs).toHaveLength(1);
		expect(v.epochs[0]!.tracks.audio).toBeNull();
	});

	it('packages audio-only streams once no video configuration came', () => {
		const r = run({ audioOnlyAfterMs: 500 });
		r.f.setAudioConfig(aac);
		for (let n = 0; n < 48 * 4; n++) r.f.pushAudio(aframe(n * (1024 / 48)));
		r.f.finish();
		expect(r.epochs).toHaveLength(1);
		expect(r.epochs[0]!.tracks.video).toBeNull();
		expect(r.epochs[0]!.startMs).toBeGreaterThanOrEqual(500);
		expect(r.parts.every((p) => p.independent && p.durationMs <= 250)).toBe(true);
		for (const s of r.segments.slice(0, -1)) expect(segDuration(s)).toBeGreaterThanOrEqual(1000 - 1024 / 48);
	});
});
