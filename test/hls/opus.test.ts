import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { liveChildCount } from '../../server/common/process.js';
import type { AudioFrame } from '../../server/core/media.js';
import { OpusAacTranscoder } from '../../server/hls/opus-aac.js';
import type { Server } from '../../server/server.js';
import { ffprobe, runFfmpeg, stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { baseUrl, eventually, startTestServer, testLogger } from '../helpers/server.js';
import { cleanupTmp, decodeAll, probePackets, tmpFile } from './helpers/frames.js';
import { parsePlaylist } from './helpers/m3u8.js';
import type { ParsedPlaylist } from './helpers/m3u8.js';
import { find, parseBoxes } from './helpers/mp4.js';
import { OggOpusReader, publishOpusFromFfmpeg, stopOpusPublishers } from './helpers/ogg-opus.js';

async function opusPackets(seconds: number): Promise<AudioFrame[]> {
	const ff = runFfmpeg(
		['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${seconds}`, '-c:a', 'libopus', '-frame_duration', '20', '-f', 'ogg', 'pipe:1'],
		{ stdout: 'pipe' },
	);
	const out: AudioFrame[] = [];
	const reader = new OggOpusReader((f) => out.push(f));
	ff.child.stdout?.on('data', (c: Buffer) => reader.push(c));
	await ff.exited;
	return out;
}

describe('Opus to AAC transcoder', () => {
	afterAll(async () => {
		await stopAllFfmpeg();
	});

	it('turns Opus packets into AAC frames on the packets’ own timeline, gaps kept', async () => {
		const packets = await opusPackets(2);
		const t = OpusAacTranscoder.create({ ffmpegPath: 'ffmpeg', channels: 2, logger: testLogger() });
		expect(t.config).toMatchObject({ codec: 'aac', sampleRate: 48000, channels: 2, objectType: 2 });
		const out: AudioFrame[] = [];
		t.on('frame', (f) => out.push(f));
		const children = liveChildCount();
		expect(children).toBeGreaterThanOrEqual(1);
		// Packets 40..59 (400 ms) never arrive; one packet is garbage.
		packets.forEach((p, i) => {
			if (i >= 40 && i < 60) return;
			t.push(i === 70 ? { ...p, data: Buffer.alloc(0) } : p);
		});
		const fed = packets.length - 21;
		const expected = Math.floor((fed * 960) / 1024);
		await eventually(() => out.length >= expected - 3, 20_000);
		expect(t.stats.invalid).toBe(1);
		expect(t.stats.dropped).toBe(0);
		for (let i = 1; i < out.length; i++) expect(out[i]!.pts).toBeGreaterThan(out[i - 1]!.pts);
		const steps = out.slice(1).map((f, i) => f.pts - out[i]!.pts);
		const frameMs = 1024 / 48;
		// Regular frames, one jump for the lost 400 ms (and the 20 ms of the garbage packet).
		expect(steps.filter((s) => Math.abs(s - frameMs) > 0.01).length).toBeLessThanOrEqual(4);
		const gap = Math.max(...steps);
		expect(gap).toBeGreaterThan(400);
		expect(gap).toBeLessThan(400 + 2 * frameMs + 1);
		// The first frame is the encoder's priming, one frame before the first packet.
		expect(out[0]!.pts).toBeCloseTo(packets[0]!.pts - frameMs, 3);
		await t.close();
		expect(liveChildCount()).toBe(children - 1);
		expect(() => t.push(packets[0]!)).toThrow(/closed/);
		await t.close();
	});

	it('refuses channel layouts Ogg mapping family 0 cannot carry', () => {
		expect(() => OpusAacTranscoder.create({ ffmpegPath: 'ffmpeg', channels: 6, logger: testLogger() })).toThrow(/not supported/);
	});
});

describe('HLS of a stream with Opus audio', () => {
	let server: Server;
	beforeAll(async () => {
		server = await startTestServer();
	});
	afterEach(async () => {
		await stopOpusPublishers();
	});
	afterAll(async () => {
		await server.close();
		cleanupTmp();
		await stopAllFfmpeg();
	});

	it('carries the Opus audio as AAC, in sync with the video', async () => {
		const url = baseUrl(server);
		const pub = publishOpusFromFfmpeg(server.registry, 'opus', { duration: 20 });
		const m3u8 = `${url}/hls/opus/index.m3u8`;
		const pl = await eventually(async () => {
			const r = await fetch(m3u8);
			if (!r.ok) return null;
			const p: ParsedPlaylist = parsePlaylist(await r.text());
			const done = p.segments.filter((s) => s.uri);
			return done.length >= 4 && done.filter((s) => s.map === done.at(-1)!.map).length >= 3 ? p : null;
		}, 25_000);
		expect(server.registry.get('opus')!.info().audio).toMatchObject({ codec: 'opus' });
		// Normally one run from the start; on a loaded machine the audio configuration may come
		// after the first keyframe's wait, and a second run with audio starts a GOP later.
		const lastMap = pl.segments.filter((s) => s.uri).at(-1)!.map;
		const init = Buffer.from(await (await fetch(`${url}/hls/opus/${lastMap}`)).arrayBuffer());
		const mp4a = find(parseBoxes(init), 'moov/trak/mdia/minf/stbl/stsd/mp4a');
		expect(mp4a.body.readUInt32BE(24) >>> 16).toBe(48000);
		const segs = pl.segments.filter((s) => s.uri && s.map === lastMap);
		const bodies = await Promise.all(segs.map(async (s) => Buffer.from(await (await fetch(`${url}/hls/opus/${s.uri}`)).arrayBuffer())));

		// The run's first segment: audio starts with the video (both on the publisher's clock).
		const first = tmpFile('opus-first.mp4');
		fs.writeFileSync(first, Buffer.concat([init, bodies[0]!]));
		const probe = await ffprobe(first);
		expect(probe.streams.find((s) => s.codec_type === 'audio')).toMatchObject({ codec_name: 'aac', sample_rate: '48000', channels: 2 });
		expect(probe.streams.find((s) => s.codec_type === 'video')).toMatchObject({ codec_name: 'h264', width: 640, height: 360 });
		const p0 = await probePackets(first);
		const v0 = Number(p0.find((p) => p.codec_type === 'video')!.pts_time);
		const a0 = Number(p0.find((p) => p.codec_type === 'audio')!.pts_time);
		expect(Math.abs(a0 - v0)).toBeLessThan(0.05);

		// All segments: audio stays on the video's timeline without holes. Its tail trails the
		// video's by the transcoder's delay (audio goes out with the part after it arrives).
		const all = tmpFile('opus-all.mp4');
		fs.writeFileSync(all, Buffer.concat([init, ...bodies]));
		const packets = await probePackets(all);
		const span = (kind: string): [number, number] => {
			const ts = packets.filter((p) => p.codec_type === kind).map((p) => Number(p.pts_time));
			return [Math.min(...ts), Math.max(...ts)];
		};
		const [vs, ve] = span('video');
		const [as, ae] = span('audio');
		expect(Math.abs(as - vs)).toBeLessThan(0.05);
		expect(ae).toBeLessThanOrEqual(ve + 0.1);
		expect(ae).toBeGreaterThan(ve - 2);
		const audioPackets = packets.filter((p) => p.codec_type === 'audio').length;
		expect(audioPackets * (1024 / 48000)).toBeCloseTo(ae - as + 1024 / 48000, 1);
		const decoded = await decodeAll(all);
		expect(decoded.audio).toBe(audioPackets);
		await pub.stop();
	});
});
