import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../server/common/emitter.js';
import type { HlsPart } from '../../server/hls/index.js';
import type { Server } from '../../server/server.js';
import { ffprobe, stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { publishFromFfmpeg } from '../helpers/flv-publisher.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { cleanupTmp, decodeAll, tmpFile } from './helpers/frames.js';
import { parsePlaylist } from './helpers/m3u8.js';
import type { ParsedPlaylist } from './helpers/m3u8.js';
import { parseBoxes } from './helpers/mp4.js';

async function get(url: string): Promise<{ status: number; body: Buffer; headers: Headers }> {
	const r = await fetch(url);
	return { status: r.status, body: Buffer.from(await r.arrayBuffer()), headers: r.headers };
}

async function playlist(url: string): Promise<ParsedPlaylist> {
	const r = await get(url);
	if (r.status !== 200) throw new Error(`playlist ${r.status}: ${r.body.toString()}`);
	return parsePlaylist(r.body.toString());
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;

describe('HLS service', () => {
	let server: Server;
	let url: string;
	beforeAll(async () => {
		server = await startTestServer({ hls: { cleanupGraceMs: 1500, blockingTimeoutMs: 1500 } });
		url = baseUrl(server);
	});
	afterEach(() => stopAllFfmpeg());
	afterAll(async () => {
		await server.close();
		cleanupTmp();
	});

	it('packages a published stream: playlist within 3 s, segments and parts decode, ENDLIST at the end, files cleaned up', async () => {
		const hls = server.hls!;
		const pub = publishFromFfmpeg(server.registry, 'e2e', { duration: 12 });
		await waitFor(pub.publication, 'video', 15_000);
		const firstFrame = performance.now();
		const m3u8 = `${url}/hls/e2e/index.m3u8`;
		await eventually(async () => (await fetch(m3u8)).ok, 10_000, 20);
		expect(performance.now() - firstFrame).toBeLessThan(3000);

		const info = (await (await fetch(`${url}/api/streams/e2e`)).json()) as { hls: string | null };
		expect(info.hls).toBe('/hls/e2e/index.m3u8');

		const pl = await eventually(async () => {
			const p = await playlist(m3u8);
			return p.segments.filter((s) => s.uri).length >= 2 ? p : null;
		}, 15_000);
		expect(pl.version).toBeGreaterThanOrEqual(6);
		expect(pl.targetDuration).toBe(1);
		expect(pl.serverControl['CAN-BLOCK-RELOAD']).toBe('YES');
		expect(Number(pl.serverControl['PART-HOLD-BACK'])).toBeGreaterThanOrEqual(3 * pl.partTarget!);
		expect(pl.partTarget).toBe(0.25);
		expect(pl.independentSegments).toBe(true);
		expect(pl.preloadHint).toMatch(/^part-[a-z0-9]{8}-\d+\.m4s$/);
		const seg = pl.segments.find((s) => s.uri && s.parts.length > 0)!;
		expect(seg.map).toBe('init.mp4');
		expect(seg.parts[0]!.independent).toBe(true);
		expect(Math.abs((seg.programDateTime ?? 0) - Date.now())).toBeLessThan(10_000);

		const init = await get(`${url}/hls/e2e/init.mp4`);
		expect(init.headers.get('content-type')).toBe('video/mp4');
		const segment = await get(`${url}/hls/e2e/${seg.uri}`);
		expect(segment.status).toBe(200);
		expect(segment.headers.get('content-type')).toBe('video/iso.segment');
		expect(segment.headers.get('cache-control')).toContain('immutable');
		const parts = await Promise.all(seg.parts.map((p) => get(`${url}/hls/e2e/${p.uri}`)));
		// A segment is exactly its parts, back to back.
		expect(Buffer.concat(parts.map((p) => p.body)).equals(segment.body)).toBe(true);

		const file = tmpFile('e2e-seg.mp4');
		fs.writeFileSync(file, Buffer.concat([init.body, segment.body]));
		const probe = await ffprobe(file);
		expect(probe.streams.find((s) => s.codec_type === 'video')).toMatchObject({ codec_name: 'h264', width: 640, height: 360 });
		expect(probe.streams.find((s) => s.codec_type === 'audio')).toMatchObject({ codec_name: 'aac', sample_rate: '48000', channels: 2 });
		const decoded = await decodeAll(file);
		expect(decoded.video).toBe(Math.round((seg.duration ?? 0) * 25));
		expect(decoded.audio).toBeGreaterThan(40);

		// A part alone (with the init segment) decodes too: what an LL-HLS player appends.
		const partFile = tmpFile('e2e-part.mp4');
		fs.writeFileSync(partFile, Buffer.concat([init.body, parts[0]!.body]));
		expect((await decodeAll(partFile)).video).toBe(Math.round(seg.parts[0]!.duration * 25));

		// Complete segments are on disk too.
		const folder = path.join(server.config.hls.dir, 'e2e');
		expect(fs.readdirSync(folder)).toContain(seg.uri);
		expect(server.registry.get('e2e')!.viewerCounts.hls).toBe(1);

		// On a loaded machine the stream may already have ended by now.
		const ended = hls.session('e2e')?.ended ? Promise.resolve() : waitFor(hls, 'end', 20_000, (s) => s === 'e2e');
		await pub.ffmpeg.exited;
		await ended;
		const last = await playlist(m3u8);
		expect(last.ended).toBe(true);
		expect(last.preloadHint).toBeNull();
		expect(server.registry.get('e2e')?.info().hls ?? null).toBeNull();
		await eventually(() => hls.session('e2e') === undefined && !fs.existsSync(folder), 10_000);
		expect((await fetch(m3u8)).status).toBe(404);
	});

	it('plays as ordinary HLS in a player that does not know LL-HLS (ffmpeg)', async () => {
		const pub = publishFromFfmpeg(server.registry, 'classic', { duration: 8 });
		const m3u8 = `${url}/hls/classic/index.m3u8`;
		await eventually(async () => (await playlist(m3u8)).segments.filter((s) => s.uri).length >= 3, 15_000);
		const probe = await ffprobe(m3u8, ['-live_start_index', '0']);
		expect(probe.streams.find((s) => s.codec_type === 'video')).toMatchObject({ codec_name: 'h264', width: 640, height: 360 });
		expect(probe.streams.find((s) => s.codec_type === 'audio')).toMatchObject({ codec_name: 'aac' });
		await pub.stop();
	});

	it('answers a blocking playlist reload the moment the part exists, and rejects bad directives', async () => {
		const hls = server.hls!;
		const pub = publishFromFfmpeg(server.registry, 'block', { duration: 20 });
		const m3u8 = `${url}/hls/block/index.m3u8`;
		await eventually(async () => (await playlist(m3u8)).segments.length >= 2, 15_000);
		const created = new Map<string, number>();
		hls.on('part', (stream, p) => {
			if (stream === 'block') created.set(`${p.msn}.${p.index}`, p.createdAt);
		});
		const delays: number[] = [];
		for (let i = 0; i < 6; i++) {
			const session = hls.session('block')!;
			const last = session.segments[session.segments.length - 1]!;
			// The next part: in this segment, or the first of the next if this one is complete.
			const [msn, part] = last.complete ? [last.msn + 1, 0] : [last.msn, last.parts.length];
			expect(created.has(`${msn}.${part}`)).toBe(false);
			const r = await get(`${m3u8}?_HLS_msn=${msn}&_HLS_part=${part}`);
			const arrived = performance.now();
			expect(r.status).toBe(200);
			const pl = parsePlaylist(r.body.toString());
			const newest = pl.segments[pl.segments.length - 1]!;
			const newestMsn = pl.mediaSequence + pl.segments.length - 1;
			expect(newestMsn > msn || (newestMsn === msn && newest.parts.length - 1 >= part)).toBe(true);
			const at = created.get(`${msn}.${part}`) ?? created.get(`${msn + 1}.0`);
			expect(at).toBeDefined();
			delays.push(arrived - at!);
		}
		// Event-driven: the answer follows the part by a few ms, not a polling interval.
		expect(median(delays)).toBeLessThan(150);
		for (const d of delays) expect(d).toBeGreaterThanOrEqual(0);

		const session = hls.session('block')!;
		const newest = session.segments[session.segments.length - 1]!.msn;
		expect((await get(`${m3u8}?_HLS_msn=${newest + 3}`)).status).toBe(400);
		expect((await get(`${m3u8}?_HLS_msn=${newest}&_HLS_part=40`)).status).toBe(400);
		expect((await get(`${m3u8}?_HLS_part=1`)).status).toBe(400);
		expect((await get(`${m3u8}?_HLS_msn=abc`)).status).toBe(400);
		// An already available segment answers at once.
		expect((await get(`${m3u8}?_HLS_msn=${newest - 1}`)).status).toBe(200);
		await pub.stop();
	});

	it('serves a preload hint part as soon as it is written', async () => {
		const hls = server.hls!;
		const pub = publishFromFfmpeg(server.registry, 'hint', { duration: 20 });
		const m3u8 = `${url}/hls/hint/index.m3u8`;
		await eventually(async () => (await playlist(m3u8)).segments.length >= 1, 15_000);
		const delays: number[] = [];
		for (let i = 0; i < 5; i++) {
			const pl = await playlist(m3u8);
			const hint = pl.preloadHint!;
			const seq = Number(/-(\d+)\.m4s$/.exec(hint)![1]);
			let createdAt: number | null = null;
			const onPart = (stream: string, p: Readonly<HlsPart>): void => {
				if (stream === 'hint' && p.seq === seq) createdAt = p.createdAt;
			};
			hls.on('part', onPart);
			const r = await get(`${url}/hls/hint/${hint}`);
			const arrived = performance.now();
			hls.off('part', onPart);
			expect(r.status).toBe(200);
			expect(parseBoxes(r.body).map((b) => b.type)).toEqual(['moof', 'mdat']);
			if (createdAt !== null) delays.push(arrived - createdAt);
		}
		expect(delays.length).toBeGreaterThanOrEqual(3);
		expect(median(delays)).toBeLessThan(150);
		await pub.stop();
	});

	it('answers 503 when a blocked request outlives blockingTimeoutMs', async () => {
		// A publisher that goes quiet without leaving: nothing new will come.
		const pub = publishFromFfmpeg(server.registry, 'quiet', { duration: 20 });
		const m3u8 = `${url}/hls/quiet/index.m3u8`;
		await eventually(async () => (await playlist(m3u8)).segments.length >= 1, 15_000);
		pub.ffmpeg.child.kill('SIGSTOP');
		try {
			const session = server.hls!.session('quiet')!;
			const last = session.segments[session.segments.length - 1]!;
			const t0 = performance.now();
			const r = await get(`${m3u8}?_HLS_msn=${last.msn + 1}&_HLS_part=0`);
			expect(r.status).toBe(503);
			expect(performance.now() - t0).toBeGreaterThanOrEqual(1400);
			const hint = /PRELOAD-HINT:TYPE=PART,URI="([^"]+)"/.exec(session.playlist())?.[1];
			expect(hint).toBeDefined();
			expect((await get(`${url}/hls/quiet/${hint!}`)).status).toBe(503);
		} finally {
			pub.ffmpeg.child.kill('SIGCONT');
		}
		await pub.stop();
	});

	it('answers 404 for unknown streams and files', async () => {
		expect((await get(`${url}/hls/nosuch/index.m3u8`)).status).toBe(404);
		const pub = publishFromFfmpeg(server.registry, 'known', { duration: 20 });
		await eventually(async () => (await fetch(`${url}/hls/known/index.m3u8`)).ok, 15_000);
		expect((await get(`${url}/hls/known/seg-aaaaaaaa-1.m4s`)).status).toBe(404);
		expect((await get(`${url}/hls/known/part-aaaaaaaa-1.m4s`)).status).toBe(404);
		expect((await get(`${url}/hls/known/init-aaaaaaaa-3.mp4`)).status).toBe(404);
		const session = server.hls!.session('known')!;
		expect((await get(`${url}/hls/known/seg-${session.sid}-999999.m4s`)).status).toBe(404);
		expect((await get(`${url}/hls/known/part-${session.sid}-${session.nextPartSeq + 50}.m4s`)).status).toBe(404);
		const body = (await (await fetch(`${url}/hls/nosuch/index.m3u8`)).json()) as { error: { code: string } };
		expect(body.error.code).toBe('not_found');
		await pub.stop();
	});

	it('serves byte ranges of segments', async () => {
		const pub = publishFromFfmpeg(server.registry, 'range', { duration: 20 });
		const m3u8 = `${url}/hls/range/index.m3u8`;
		const pl = await eventually(async () => {
			const p = await playlist(m3u8);
			return p.segments.some((s) => s.uri) ? p : null;
		}, 15_000);
		const segUrl = `${url}/hls/range/${pl.segments.find((s) => s.uri)!.uri}`;
		const full = (await get(segUrl)).body;
		const r = await fetch(segUrl, { headers: { Range: 'bytes=100-199' } });
		expect(r.status).toBe(206);
		expect(r.headers.get('content-range')).toBe(`bytes 100-199/${full.length}`);
		expect(Buffer.from(await r.arrayBuffer()).equals(full.subarray(100, 200))).toBe(true);
		const tail = await fetch(segUrl, { headers: { Range: 'bytes=-10' } });
		expect(Buffer.from(await tail.arrayBuffer()).equals(full.subarray(full.length - 10))).toBe(true);
		expect((await fetch(segUrl, { headers: { Range: `bytes=${full.length + 5}-` } })).status).toBe(416);
		expect(r.headers.get('access-control-expose-headers')).toContain('Content-Range');
		await pub.stop();
	});
});
