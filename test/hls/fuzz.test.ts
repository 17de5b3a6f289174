import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AacConfig } from '../../server/core/codecs/audio.js';
import { NAL, nalType } from '../../server/core/codecs/h264.js';
import type { VideoConfig } from '../../server/core/media.js';
import { StreamRegistry } from '../../server/core/stream.js';
import type { Publication } from '../../server/core/stream.js';
import { HlsDiskStore } from '../../server/hls/disk-store.js';
import { VIDEO_TRACK_ID } from '../../server/hls/fmp4.js';
import { HlsSession } from '../../server/hls/session.js';
import { stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { testLogger } from '../helpers/server.js';
import { cleanupTmp, encodeClip, probePackets, tmpFile } from './helpers/frames.js';
import { parsePlaylist } from './helpers/m3u8.js';
import { readFragments } from './helpers/mp4.js';

/** mulberry32: a small seeded PRNG so a failing run can be replayed from its seed. */
function prng(seed: number): () => number {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

describe('HLS packaging of random frame sequences', () => {
	/** Two real H.264 configurations, each with slices that decode with it. */
	const videos: { config: VideoConfig; idr: Buffer[]; p: Buffer[] }[] = [];
	/** Real AAC configurations with a real frame each (ffprobe decodes some audio to probe it). */
	const aacs: { config: AacConfig; frame: Buffer }[] = [];
	let registry: StreamRegistry;
	let store: HlsDiskStore;

	beforeAll(async () => {
		for (const [width, height] of [
			[640, 360],
			[320, 240],
		] as const) {
			const clip = await encodeClip({ duration: 0.3, audio: false, width, height });
			const key = clip.videoFrames.find((f) => f.keyframe);
			const inter = clip.videoFrames.find((f) => !f.keyframe);
			if (!key || !inter) throw new Error('clip without frames of both kinds');
			// Slice data only: parameter sets come from the init segment.
			videos.push({
				config: clip.video,
				idr: key.nalus.filter((n) => nalType(n) === NAL.IDR),
				p: inter.nalus.filter((n) => nalType(n) === NAL.SLICE),
			});
		}
		for (const [rate, channels] of [
			[48000, 2],
			[44100, 1],
		] as const) {
			const a = await encodeClip({ duration: 0.2, audioRate: rate, audioChannels: channels });
			if (!a.audio || !a.audioFrames[5]) throw new Error('clip without audio');
			aacs.push({ config: a.audio, frame: a.audioFrames[5].data });
		}
		registry = new StreamRegistry({ logger: testLogger(), maxStreams: 10 });
		store = await HlsDiskStore.create({ dir: tmpFile('fuzz-hls'), maxBytes: 50 * 1024 * 1024, logger: testLogger() });
	});
	afterAll(async () => {
		registry.close();
		await store.close();
		cleanupTmp();
		await stopAllFfmpeg();
	});

	/** A filler NAL unit (type 12) of `n` bytes: gives frames random sizes decoders skip. */
	const filler = (n: number): Buffer => Buffer.concat([Buffer.from([0x0c]), Buffer.alloc(n, 0xff), Buffer.from([0x80])]);

	async function fuzzRun(seed: number): Promise<void> {
		const rnd = prng(seed);
		const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
		const fps = pick([5, 12, 24, 25, 29.97, 30, 50, 60]);
		const interval = 1000 / fps;
		const jitter = rnd() < 0.5 ? 0 : rnd() * interval * 0.3;
		const gopMs = pick([200, 500, 1000, 1000, 2000, 3500]);
		const bframes = rnd() < 0.3;
		const withAudio = rnd() < 0.8;
		const partTargetMs = pick([200, 250, 330]);
		const segmentTargetMs = pick([500, 1000, 2000]);
		const windowSegments = pick([3, 4, 6]);
		const name = `fuzz${seed}`;
		const session = new HlsSession({ stream: name, partTargetMs, segmentTargetMs, windowSegments, ffmpegPath: 'ffmpeg', store, logger: testLogger() });
		const inits = new Map<string, Buffer>();
		session.on('init', (n) => inits.set(n, session.init(n) as Buffer));
		const segmentData = new Map<number, { init: string; parts: Buffer[] }>();
		session.on('part', (p) => {
			const seg = session.segment(p.msn);
			if (!seg || !p.data) throw new Error('part without its segment');
			const entry = segmentData.get(p.msn) ?? { init: seg.initName, parts: [] };
			entry.parts.push(p.data);
			segmentData.set(p.msn, entry);
		});
		let lastSequence = -1;
		const check = (): void => {
			const pl = parsePlaylist(session.playlist());
			expect(pl.mediaSequence).toBeGreaterThanOrEqual(lastSequence);
			lastSequence = pl.mediaSequence;
			expect(pl.segments.filter((s) => s.uri !== null).length).toBeLessThanOrEqual(windowSegments);
			const pdts = pl.segments.map((s) => s.programDateTime ?? 0);
			for (let i = 1; i < pdts.length; i++) expect(pdts[i]!).toBeGreaterThanOrEqual(pdts[i - 1]!);
			expect(Number(pl.serverControl['PART-HOLD-BACK'])).toBeGreaterThanOrEqual(3 * (pl.partTarget ?? 0) - 1e-6);
			expect(Number(pl.serverControl['HOLD-BACK'])).toBeGreaterThanOrEqual(3 * pl.targetDuration);
		};
		session.on('segment', check);

		let pub: Publication = registry.publish(name, { protocol: 'rtmp', remoteAddress: 'fuzz', kick: () => undefined });
		session.attach(pub);
		let base = rnd() < 0.2 ? 1_000_000 * rnd() : 0;
		let dts = 0;
		let audioPts = 0;
		let audio = pick(aacs);
		let pushedVideo = 0;
		let v = pick(videos);
		const configure = (): void => {
			v = rnd() < 0.8 ? (videos[0] as (typeof videos)[0]) : pick(videos);
			pub.setVideoConfig(v.config);
			if (withAudio) pub.setAudioConfig(audio.config);
		};
		configure();
		const frames = Math.round((4000 + rnd() * 10_000) / interval);
		let sinceKey = Infinity;
		for (let i = 0; i < frames; i++) {
			const r = rnd();
			if (r < 0.01) {
				dts += 100 + rnd() * 3000; // the publisher stalls
			} else if (r < 0.015) {
				base += rnd() < 0.5 ? 3_600_000 : -dts; // its clock jumps
			} else if (r < 0.02) {
				// Takeover by a new publisher on a clock of its own.
				const old = pub;
				pub = registry.publish(name, { protocol: 'rtmp', remoteAddress: 'fuzz', kick: () => undefined });
				session.publicationEnded(old);
				session.attach(pub);
				base = rnd() * 10_000 - dts;
				if (rnd() < 0.5) audio = pick(aacs);
				configure();
				sinceKey = Infinity;
			} else if (r < 0.025) {
				// New parameter sets; encoders send them right before an IDR.
				v = pick(videos);
				pub.setVideoConfig(v.config);
				sinceKey = Infinity;
			}
			const key = sinceKey >= gopMs || rnd() < 0.01;
			sinceKey = key ? 0 : sinceKey + interval;
			const t = base + dts + (rnd() - 0.5) * jitter;
			const cts = bframes && !key ? pick([0, 1, 2]) * interval : 0;
			const nalus = [...(key ? v.idr : v.p), filler(Math.floor(rnd() * 2000))];
			pub.pushVideo({ kind: 'video', dts: t, pts: t + cts, keyframe: key, nalus, receivedAt: dts });
			pushedVideo++;
			if (rnd() < 0.005) pub.pushVideo({ kind: 'video', dts: t, pts: t, keyframe: false, nalus, receivedAt: dts }); // same timestamp twice
			if (withAudio) {
				const frameMs = (1024 * 1000) / audio.config.sampleRate;
				while (audioPts < dts + interval) {
					const lost = rnd() < 0.02;
					if (!lost) pub.pushAudio({ kind: 'audio', pts: base + audioPts + (rnd() - 0.5) * 2, data: audio.frame, receivedAt: audioPts });
					audioPts += frameMs;
				}
			}
			dts += interval;
			if (audioPts < dts - 1000) audioPts = dts; // after a stall audio resumes with video
		}
		pub.end('done');
		session.publicationEnded(pub);
		session.end();
		const final = parsePlaylist(session.playlist());
		expect(final.ended).toBe(true);
		expect(final.preloadHint).toBeNull();
		expect(pushedVideo).toBeGreaterThan(0);

		// Segments with their init segment demux cleanly in ffprobe: concatenated by epoch, the
		// first and the last epoch of each run (ffprobe is the slow part of this test).
		const byInit = new Map<string, Buffer[]>();
		let samples = 0;
		for (const [, seg] of [...segmentData].sort((a, b) => a[0] - b[0])) {
			const list = byInit.get(seg.init) ?? [];
			list.push(...seg.parts);
			byInit.set(seg.init, list);
			for (const p of seg.parts) for (const f of readFragments(p)) for (const t of f.tracks) if (t.trackId === VIDEO_TRACK_ID) samples += t.samples.length;
		}
		const stats = session.fragmenterStats;
		expect(samples).toBe(stats.videoFrames - stats.droppedVideo);
		const epochs = [...byInit];
		const probed = new Set([epochs[0], epochs[epochs.length - 1]].filter((e): e is [string, Buffer[]] => e !== undefined));
		for (const [init, parts] of probed) {
			const file = tmpFile(`${name}-${init}`);
			fs.writeFileSync(file, Buffer.concat([inits.get(init) as Buffer, ...parts]));
			const packets = await probePackets(file);
			const videoPackets = packets.filter((p) => p.codec_type === 'video');
			expect(videoPackets.length).toBeGreaterThan(0);
			for (let i = 1; i < videoPackets.length; i++) expect(Number(videoPackets[i]!.dts_time)).toBeGreaterThan(Number(videoPackets[i - 1]!.dts_time));
		}
		await session.close();
	}

	it('always gives playlists that parse and segments ffprobe demuxes', async () => {
		const seeds = Array.from({ length: 24 }, (_, i) => 1000 + i * 7919);
		for (const seed of seeds) {
			try {
				await fuzzRun(seed);
			} catch (err) {
				throw new Error(`fuzz seed ${seed}: ${(err as Error).message}`, { cause: err });
			}
		}
	}, 120_000);
});
