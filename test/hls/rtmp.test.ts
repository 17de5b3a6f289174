import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from '../../server/server.js';
import { ffprobe, runFfmpeg, stopAllFfmpeg, testSourceArgs } from '../helpers/ffmpeg.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { cleanupTmp, decodeAll, tmpFile } from './helpers/frames.js';
import { parsePlaylist } from './helpers/m3u8.js';
import { readFragments } from './helpers/mp4.js';
import { VIDEO_TRACK_ID } from '../../server/hls/fmp4.js';
import type { ParsedPlaylist } from './helpers/m3u8.js';

describe('HLS of a stream published over RTMP', () => {
	let server: Server;
	beforeAll(async () => {
		server = await startTestServer({ hls: { cleanupGraceMs: 60_000 } });
	});
	afterEach(() => stopAllFfmpeg());
	afterAll(async () => {
		await server.close();
		cleanupTmp();
	});

	it('turns ffmpeg’s RTMP publish (High profile, B-frames) into a playable playlist that ends when ffmpeg stops', async () => {
		const rtmp = server.rtmp!;
		const ff = runFfmpeg([...testSourceArgs({ duration: 10, profile: 'high', bframes: 2 }), '-f', 'flv', `rtmp://127.0.0.1:${rtmp.port}/${rtmp.app}/viartmp`]);
		const url = baseUrl(server);
		const m3u8 = `${url}/hls/viartmp/index.m3u8`;
		// B-frames and High profile: the bridge may switch the stream to its transcoded rendition
		// (whose first frames may come sparse while its encoder warms up), so take the newest
		// complete segment once a few exist, with its own init segment.
		const pl = await eventually(async () => {
			const r = await fetch(m3u8);
			if (!r.ok) return null;
			const p: ParsedPlaylist = parsePlaylist(await r.text());
			return p.segments.filter((s) => s.uri).length >= 4 ? p : null;
		}, 25_000);
		const seg = pl.segments.filter((s) => s.uri).at(-1)!;
		const init = Buffer.from(await (await fetch(`${url}/hls/viartmp/${seg.map}`)).arrayBuffer());
		const body = Buffer.from(await (await fetch(`${url}/hls/viartmp/${seg.uri}`)).arrayBuffer());
		const pdts = pl.segments.map((s) => s.programDateTime ?? 0);
		for (let i = 1; i < pdts.length; i++) expect(pdts[i]!).toBeGreaterThanOrEqual(pdts[i - 1]!);
		const file = tmpFile('rtmp.mp4');
		fs.writeFileSync(file, Buffer.concat([init, body]));
		const probe = await ffprobe(file);
		// The transcoded rendition (if the bridge made one for the B-frames) or the original: both 640x360 H.264.
		expect(probe.streams.find((s) => s.codec_type === 'video')).toMatchObject({ codec_name: 'h264', width: 640, height: 360 });
		expect(probe.streams.find((s) => s.codec_type === 'audio')).toMatchObject({ codec_name: 'aac', sample_rate: '48000' });
		// Every video sample of the segment decodes (a transcoder under load may have skipped frames).
		const samples = readFragments(body).flatMap((f) => f.tracks.filter((t) => t.trackId === VIDEO_TRACK_ID)).reduce((a, t) => a + t.samples.length, 0);
		expect(samples).toBeGreaterThan(0);
		expect((await decodeAll(file)).video).toBe(samples);
		await ff.exited;
		// The playlist stays (cleanupGraceMs) with EXT-X-ENDLIST once the publisher is gone.
		await eventually(async () => parsePlaylist(await (await fetch(m3u8)).text()).ended, 20_000);
	});
});
