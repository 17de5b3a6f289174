import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../server/common/emitter.js';
import { configSchema } from '../../server/config/schema.js';
import { StreamRegistry, VideoRendition } from '../../server/core/stream.js';
import { VIDEO_TRACK_ID } from '../../server/hls/fmp4.js';
import { HlsService } from '../../server/hls/index.js';
import type { HlsSegment, HlsSession } from '../../server/hls/index.js';
import { ffprobe, stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { publishFromFfmpeg } from '../helpers/flv-publisher.js';
import { eventually, testLogger } from '../helpers/server.js';
import { cleanupTmp, decodeAll, tmpFile } from './helpers/frames.js';
import { parsePlaylist } from './helpers/m3u8.js';
import { find, parseBoxes, readFragments } from './helpers/mp4.js';

function initWidth(init: Buffer): number {
	return find(parseBoxes(init), 'moov/trak/mdia/minf/stbl/stsd/avc1').body.readUInt16BE(24);
}

/** Video decode time span of a segment, in ms. */
function videoSpan(seg: HlsSegment): { start: number; end: number } {
	const frags = readFragments(Buffer.concat(seg.chunks ?? [])).flatMap((f) => f.tracks.filter((t) => t.trackId === VIDEO_TRACK_ID));
	const first = frags[0]!;
	const last = frags[frags.length - 1]!;
	const lastDur = last.samples.reduce((a, s) => a + (s.duration ?? 0), 0);
	return { start: first.baseMediaDecodeTime / 90, end: (last.baseMediaDecodeTime + lastDur) / 90 };
}

async function probeSegment(session: HlsSession, seg: HlsSegment, name: string): Promise<{ width?: number; frames: number }> {
	const file = tmpFile(name);
	fs.writeFileSync(file, Buffer.concat([session.init(seg.initName)!, ...(seg.chunks ?? [])]));
	const probe = await ffprobe(file);
	const frames = (await decodeAll(file)).video;
	return { width: probe.streams.find((s) => s.codec_type === 'video')?.width, frames };
}

describe('HLS video source changes', () => {
	let registry: StreamRegistry;
	let sources: StreamRegistry;
	let hls: HlsService;
	beforeAll(async () => {
		registry = new StreamRegistry({ logger: testLogger(), maxStreams: 10 });
		sources = new StreamRegistry({ logger: testLogger(), maxStreams: 10 });
		const config = configSchema.parse({ hls: { dir: tmpFile('switch-hls'), cleanupGraceMs: 200 } }).hls;
		hls = await HlsService.create({ config, registry, logger: testLogger(), ffmpegPath: 'ffmpeg' });
	});
	afterEach(() => stopAllFfmpeg());
	afterAll(async () => {
		registry.close();
		sources.close();
		await hls.close();
		cleanupTmp();
	});

	it('follows the transcoded rendition from its next keyframe, and back to the original', async () => {
		const pub = publishFromFfmpeg(registry, 'tc', { duration: 40 });
		const session = await eventually(() => {
			const s = hls.session('tc');
			return s && s.segments.filter((x) => x.complete).length >= 1 ? s : null;
		}, 20_000);

		// The "transcoder": a second encoder at 320x180, its frames put on the publication's
		// timeline 300 ms late, the way a real transcoder's output trails its input.
		const transcoded = publishFromFfmpeg(sources, 'src', { width: 320, height: 180, audio: false, duration: 40 });
		const rendition = new VideoRendition(testLogger());
		let latest = 0;
		pub.publication.on('video', (f) => (latest = f.dts));
		let offset: number | null = null;
		transcoded.publication.on('videoConfig', (c) => rendition.setConfig(c));
		transcoded.publication.on('video', (f) => {
			offset ??= latest - 300 - f.dts;
			if (rendition.config) rendition.push({ ...f, dts: f.dts + offset, pts: f.pts + offset });
		});
		pub.publication.setVideoPath({ mode: 'transcode', reason: 'test' }, rendition);

		const switched = await eventually(() => {
			const s = session.segments.find((x) => x.discontinuity && x.complete && x.chunks);
			return s ?? null;
		}, 20_000);
		expect(switched.initName).toBe(`init-${session.sid}-1.mp4`);
		expect(initWidth(session.init(switched.initName)!)).toBe(320);
		const pl = parsePlaylist(session.playlist());
		expect(pl.segments.some((s) => s.discontinuity && s.map === switched.initName)).toBe(true);
		// The rendition's frames carry their source frames' (earlier) arrival times: PDT still never goes back.
		await eventually(() => session.segments.filter((x) => x.initName === switched.initName && x.complete).length >= 2, 20_000);
		const pdts = parsePlaylist(session.playlist()).segments.map((s) => s.programDateTime ?? 0);
		for (let i = 1; i < pdts.length; i++) expect(pdts[i]!).toBeGreaterThanOrEqual(pdts[i - 1]!);
		const before = session.segments[session.segments.indexOf(switched) - 1]!;
		expect(before.initName).toBe('init.mp4');
		// Media time goes on where the original stopped (the late rendition is moved up to it).
		expect(videoSpan(switched).start).toBeGreaterThanOrEqual(videoSpan(before).end - 0.02);
		const after = await probeSegment(session, switched, 'switched.mp4');
		expect(after.width).toBe(320);
		expect(after.frames).toBeGreaterThan(10);
		expect((await probeSegment(session, before, 'before.mp4')).width).toBe(640);

		// The bridge goes back to passthrough: the original returns at its next keyframe.
		pub.publication.setVideoPath({ mode: 'passthrough', reason: 'test' }, null);
		expect(rendition.ended).toBe(true);
		const back = await eventually(() => session.segments.find((x) => x.initName === `init-${session.sid}-2.mp4` && x.complete && x.chunks) ?? null, 20_000);
		expect(back.discontinuity).toBe(true);
		expect((await probeSegment(session, back, 'back.mp4')).width).toBe(640);
		await transcoded.stop();
		await pub.stop();
	});

	it('keeps one playlist across a publisher takeover, with a discontinuity', async () => {
		const first = publishFromFfmpeg(registry, 'tk', { duration: 40 });
		const session = await eventually(() => {
			const s = hls.session('tk');
			return s && s.segments.filter((x) => x.complete).length >= 2 ? s : null;
		}, 20_000);
		let ended = false;
		hls.on('end', (s) => {
			if (s === 'tk') ended = true;
		});
		const lastMsn = session.segments[session.segments.length - 1]!.msn;
		const second = publishFromFfmpeg(registry, 'tk', { width: 320, height: 180, duration: 40 });
		const taken = await eventually(() => session.segments.find((x) => x.discontinuity && x.complete && x.chunks) ?? null, 20_000);
		expect(hls.session('tk')).toBe(session);
		expect(ended).toBe(false);
		expect(taken.msn).toBeGreaterThan(lastMsn);
		expect(initWidth(session.init(taken.initName)!)).toBe(320);
		const pl = parsePlaylist(session.playlist());
		expect(pl.ended).toBe(false);
		expect((await probeSegment(session, taken, 'taken.mp4')).width).toBe(320);
		await first.ffmpeg.exited;
		const end = waitFor(hls, 'end', 10_000, (s) => s === 'tk');
		await second.stop();
		await end;
		expect(parsePlaylist(session.playlist()).ended).toBe(true);
	});
});
