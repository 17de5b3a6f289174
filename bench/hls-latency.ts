/**
 * HLS delay benchmark: our LL-HLS (parts and full segments) against the
 * classic design, nginx with libnginx-mod-rtmp (`hls on; hls_fragment 1s`),
 * both fed over RTMP by the same ffmpeg encoder at the same moment.
 *
 *   node --import tsx bench/hls-latency.ts
 *
 * One ffmpeg encodes 640x360 25 fps H.264 (1 s GOP) + AAC in real time and
 * writes it, through the tee muxer, to three outputs at once: our RTMP
 * ingest, nginx's RTMP and a pipe to this process. The pipe is the frame-time
 * registry: the moment each FLV video tag leaves the encoder, by its
 * timestamp. Media fetched from either server is mapped back to those
 * timestamps (fMP4 tfdt/trun for us, MPEG-TS PES DTS for nginx), so every
 * frame gets a delay: publish -> the part or segment holding it has been
 * downloaded by a client here. Clients:
 *  - ours, LL-HLS: requests each next part by name before it exists (what a
 *    preload hint allows) and gets it the moment it is written;
 *  - ours, segments: blocking playlist reload `_HLS_msn=N`, then the segment;
 *  - nginx: polls its playlist every 50 ms (it cannot block), then the segment.
 * "Player" adds the live-edge hold-back a standard player keeps to the delay
 * of each unit's newest frame: PART-HOLD-BACK for LL-HLS, 3 target durations
 * (HOLD-BACK) for classic HLS. hls.js in Chromium also plays our stream in
 * low-latency mode and the delay of the picture on screen is read from its
 * playingDate (program date time) for a measured figure.
 *
 * The machine is shared: load average and CPU per second of media are
 * printed beside the delays.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { FLV_TAG, FlvDemuxer } from '../ingest/rtmp/flv.js';
import { loadConfig } from '../server/config/load.js';
import type { AacConfig } from '../server/core/codecs/audio.js';
import type { AudioFrame, VideoConfig, VideoFrame } from '../server/core/media.js';
import { Fragmenter } from '../server/hls/fragmenter.js';
import { Server } from '../server/server.js';

const WARMUP_S = Number(process.env.BENCH_WARMUP ?? 6);
const MEASURE_S = Number(process.env.BENCH_SECONDS ?? 45);
const FPS = 25;
const STREAM = 'bench';
const CLK_TCK = 100;

const children = new Set<ChildProcess>();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-hls-bench-'));

function killAll(): void {
	for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
process.on('exit', () => {
	killAll();
	fs.rmSync(tmp, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
	const s = net.createServer();
	await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
	const port = (s.address() as AddressInfo).port;
	await new Promise((r) => s.close(r));
	return port;
}

function percentile(xs: number[], p: number): number {
	if (xs.length === 0) return NaN;
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

/** CPU seconds (user + system) of a process from /proc. */
function procCpuSeconds(pid: number): number {
	try {
		const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
		const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
		return (Number(f[11]) + Number(f[12])) / CLK_TCK;
	} catch {
		return NaN;
	}
}

// ------------------------------------------------------------------ nginx

async function startNginx(): Promise<{ rtmpPort: number; httpPort: number; proc: ChildProcess; pids: () => number[] }> {
	const rtmpPort = await freePort();
	const httpPort = await freePort();
	const dir = path.join(tmp, 'nginx');
	fs.mkdirSync(path.join(dir, 'hls'), { recursive: true });
	// Started as root, nginx's worker runs as an unprivileged user: let it in.
	fs.chmodSync(tmp, 0o755);
	fs.chmodSync(dir, 0o755);
	fs.chmodSync(path.join(dir, 'hls'), 0o777);
	const conf = `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
events { worker_connections 256; }
rtmp {
	server {
		listen 127.0.0.1:${rtmpPort};
		chunk_size 4096;
		application live {
			live on;
			hls on;
			hls_path ${dir}/hls;
			hls_fragment 1s;
			hls_playlist_length 6s;
			hls_cleanup on;
		}
	}
}
http {
	access_log off;
	client_body_temp_path ${dir}/body;
	proxy_temp_path ${dir}/proxy;
	fastcgi_temp_path ${dir}/fastcgi;
	uwsgi_temp_path ${dir}/uwsgi;
	scgi_temp_path ${dir}/scgi;
	server {
		listen 127.0.0.1:${httpPort};
		location /hls/ {
			alias ${dir}/hls/;
			types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
			add_header Cache-Control no-cache;
		}
	}
}
`;
	fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
	const proc = spawn('nginx', ['-e', path.join(dir, 'error.log'), '-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
	children.add(proc);
	let err = '';
	proc.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
	// Ready when its RTMP port accepts connections.
	for (let i = 0; ; i++) {
		const ok = await new Promise<boolean>((resolve) => {
			const s = net.connect(rtmpPort, '127.0.0.1', () => {
				s.destroy();
				resolve(true);
			});
			s.on('error', () => resolve(false));
		});
		if (ok) break;
		if (i > 50 || proc.exitCode !== null) throw new Error(`nginx did not start: ${err}`);
		await new Promise((r) => setTimeout(r, 100));
	}
	// The master and its worker, for CPU accounting.
	const pids = (): number[] => {
		const out = [proc.pid ?? 0];
		try {
			for (const t of fs.readdirSync(`/proc/${proc.pid}/task`)) {
				out.push(...fs.readFileSync(`/proc/${proc.pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
			}
		} catch {
			// gone
		}
		return out;
	};
	return { rtmpPort, httpPort, proc, pids };
}

// ------------------------------------------------------- the frame registry

/** Publish time (performance.now()) of each video frame by its FLV timestamp (ms). */
const published = new Map<number, number>();
const keyframes = new Set<number>();

function readFlvPipe(stream: NodeJS.ReadableStream): void {
	let buf: Buffer = Buffer.alloc(0);
	let header = false;
	stream.on('data', (chunk: Buffer) => {
		const now = performance.now();
		buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
		if (!header) {
			if (buf.length < 13) return;
			buf = buf.subarray(13);
			header = true;
		}
		while (buf.length >= 11) {
			const size = buf.readUIntBE(1, 3);
			if (buf.length < 15 + size) break;
			const ts = buf.readUIntBE(4, 3) | ((buf[7] ?? 0) << 24);
			const isVideoFrame = buf[0] === 9 && buf[12] === 1; // AVC NALU packet, not the sequence header
			if (isVideoFrame && !published.has(ts)) published.set(ts, now);
			if (isVideoFrame && (buf[11] ?? 0) >> 4 === 1) keyframes.add(ts);
			buf = buf.subarray(15 + size);
		}
	});
}

function publishTime(dtsMs: number): number | undefined {
	return published.get(Math.round(dtsMs)) ?? published.get(Math.round(dtsMs) - 1) ?? published.get(Math.round(dtsMs) + 1);
}

// ---------------------------------------------------------------- parsing

interface Box {
	type: string;
	body: Buffer;
}

function boxes(buf: Buffer): Box[] {
	const out: Box[] = [];
	for (let off = 0; off + 8 <= buf.length; ) {
		const size = buf.readUInt32BE(off);
		if (size < 8) break;
		out.push({ type: buf.toString('latin1', off + 4, off + 8), body: buf.subarray(off + 8, off + size) });
		off += size;
	}
	return out;
}

/** Video decode times (ms) of every sample in our fMP4 fragments (track 1). */
function fmp4VideoDts(buf: Buffer): number[] {
	const out: number[] = [];
	for (const moof of boxes(buf).filter((b) => b.type === 'moof')) {
		for (const traf of boxes(moof.body).filter((b) => b.type === 'traf')) {
			const kids = boxes(traf.body);
			const tfhd = kids.find((b) => b.type === 'tfhd');
			if (!tfhd || tfhd.body.readUInt32BE(4) !== 1) continue;
			const tfdt = kids.find((b) => b.type === 'tfdt');
			const trun = kids.find((b) => b.type === 'trun');
			if (!tfdt || !trun) continue;
			let t = tfdt.body[0] === 1 ? Number(tfdt.body.readBigUInt64BE(4)) : tfdt.body.readUInt32BE(4);
			const flags = trun.body.readUInt32BE(0) & 0xffffff;
			const count = trun.body.readUInt32BE(4);
			let off = 8 + (flags & 1 ? 4 : 0) + (flags & 4 ? 4 : 0);
			const per = [0x100, 0x200, 0x400, 0x800].filter((f) => flags & f).length * 4;
			for (let i = 0; i < count; i++) {
				out.push(t / 90);
				t += flags & 0x100 ? trun.body.readUInt32BE(off) : 0;
				off += per;
			}
		}
	}
	return out;
}

/** Video DTS (ms) of every PES in an MPEG-TS segment. */
function tsVideoDts(buf: Buffer): number[] {
	const out: number[] = [];
	const ts33 = (b: Buffer, o: number): number =>
		((b[o]! >> 1) & 0x07) * 2 ** 30 + (b[o + 1]! << 22) + ((b[o + 2]! >> 1) << 15) + (b[o + 3]! << 7) + (b[o + 4]! >> 1);
	for (let off = 0; off + 188 <= buf.length; off += 188) {
		if (buf[off] !== 0x47) continue;
		const pusi = (buf[off + 1]! & 0x40) !== 0;
		if (!pusi) continue;
		const afc = (buf[off + 3]! >> 4) & 3;
		let p = off + 4;
		if (afc === 2) continue;
		if (afc === 3) p += 1 + buf[p]!;
		if (buf[p] !== 0 || buf[p + 1] !== 0 || buf[p + 2] !== 1) continue;
		const streamId = buf[p + 3]!;
		if (streamId < 0xe0 || streamId > 0xef) continue;
		const ptsDts = buf[p + 7]! >> 6;
		if (ptsDts === 3) out.push(ts33(buf, p + 14) / 90);
		else if (ptsDts === 2) out.push(ts33(buf, p + 9) / 90);
	}
	return out;
}

// ---------------------------------------------------------------- clients

interface Series {
	/** Per frame: publish -> downloaded. */
	frames: number[];
	/** Per unit: publish of its newest frame -> downloaded (the live edge's delay). */
	edges: number[];
	units: number;
	unmatched: number;
	bytes: number;
}

const newSeries = (): Series => ({ frames: [], edges: [], units: 0, unmatched: 0, bytes: 0 });
let measuring = false;

function record(s: Series, dts: number[], arrivedAt: number, bytes: number, offsetMs = 0): void {
	if (!measuring || dts.length === 0) return;
	s.units++;
	s.bytes += bytes;
	let last: number | null = null;
	for (const d of dts) {
		const pub = publishTime(d - offsetMs);
		if (pub === undefined) {
			s.unmatched++;
			continue;
		}
		s.frames.push(arrivedAt - pub);
		last = arrivedAt - pub;
	}
	if (last !== null) s.edges.push(last);
}

async function fetchBody(url: string): Promise<{ status: number; body: Buffer }> {
	const r = await fetch(url);
	return { status: r.status, body: Buffer.from(await r.arrayBuffer()) };
}

/** Ours, LL-HLS: ask for each next part before it exists (preload hint style). */
async function partClient(base: string, s: Series, stop: () => boolean): Promise<number> {
	let holdBack = NaN;
	let next: { sid: string; seq: number } | null = null;
	while (!stop()) {
		if (!next) {
			const pl = await fetchBody(`${base}/index.m3u8`);
			const text = pl.body.toString();
			holdBack = Number(/PART-HOLD-BACK=([\d.]+)/.exec(text)?.[1]);
			const hint = /PRELOAD-HINT:TYPE=PART,URI="part-([a-z0-9]{8})-(\d+)\.m4s"/.exec(text);
			if (!hint) {
				await new Promise((r) => setTimeout(r, 100));
				continue;
			}
			next = { sid: hint[1]!, seq: Number(hint[2]) };
		}
		const r = await fetchBody(`${base}/part-${next.sid}-${next.seq}.m4s`);
		const arrivedAt = performance.now();
		if (r.status !== 200) {
			next = null;
			continue;
		}
		record(s, fmp4VideoDts(r.body), arrivedAt, r.body.length);
		next.seq++;
	}
	return holdBack;
}

/** Ours, full segments: blocking reload for the next segment, then fetch it. */
async function segmentClient(base: string, s: Series, stop: () => boolean): Promise<number> {
	let target = NaN;
	let next: number | null = null;
	while (!stop()) {
		const pl = await fetchBody(next === null ? `${base}/index.m3u8` : `${base}/index.m3u8?_HLS_msn=${next}`);
		const text = pl.body.toString();
		if (pl.status !== 200) {
			await new Promise((r) => setTimeout(r, 100));
			continue;
		}
		target = Number(/#EXT-X-TARGETDURATION:(\d+)/.exec(text)?.[1]);
		const seq = Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(text)?.[1]);
		const uris = [...text.matchAll(/^(seg-[a-z0-9]{8}-(\d+)\.m4s)$/gm)].map((m) => ({ uri: m[1]!, msn: Number(m[2]) }));
		if (next === null) {
			next = (uris.at(-1)?.msn ?? seq - 1) + 1;
			continue;
		}
		const want = uris.find((u) => u.msn === next);
		if (!want) continue;
		const r = await fetchBody(`${base}/${want.uri}`);
		record(s, fmp4VideoDts(r.body), performance.now(), r.body.length);
		next++;
	}
	return target;
}

/** nginx: poll the playlist (no blocking reload in nginx-rtmp), fetch new segments. */
async function nginxClient(base: string, s: Series, stop: () => boolean): Promise<{ target: number; offsetMs: number }> {
	const seen = new Set<string>();
	let first = true;
	let target = NaN;
	let offsetMs: number | null = null;
	while (!stop()) {
		const pl = await fetchBody(`${base}/${STREAM}.m3u8`).catch(() => null);
		if (pl?.status === 200) {
			const text = pl.body.toString();
			target = Number(/#EXT-X-TARGETDURATION:(\d+)/.exec(text)?.[1]);
			for (const uri of text.split('\n').filter((l) => l.endsWith('.ts'))) {
				if (seen.has(uri)) continue;
				seen.add(uri);
				if (first) continue; // there before we looked: its arrival time is unknown
				const r = await fetchBody(`${base}/${uri}`);
				const arrivedAt = performance.now();
				const dts = tsVideoDts(r.body);
				if (offsetMs === null && dts.length > 0) offsetMs = tsOffset(dts[0]!);
				record(s, dts, arrivedAt, r.body.length, offsetMs ?? 0);
			}
			first = false;
		}
		await new Promise((r) => setTimeout(r, 50));
	}
	return { target, offsetMs: offsetMs ?? NaN };
}

/**
 * nginx-rtmp writes TS timestamps a fixed delay after the RTMP ones. A
 * segment starts with a keyframe, so the delay is the distance from its first
 * DTS down to the nearest published keyframe (exact while it is under a GOP).
 */
function tsOffset(firstDts: number): number {
	let best = Infinity;
	for (const k of keyframes) {
		const d = firstDts - k;
		if (d >= -0.5 && d < best) best = d;
	}
	return Math.round(best);
}

// ---------------------------------------------------------------- hls.js

const PAGE = (hlsJs: string): string => `<!doctype html><html><body><video id="v" muted autoplay playsinline></video>
<script>${hlsJs}</script>
<script>
window.start = (src) => {
	// maxLiveSyncPlaybackRate lets hls.js catch up to its target latency (PART-HOLD-BACK).
	const hls = new Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 });
	window.hls = hls;
	hls.loadSource(src);
	hls.attachMedia(document.getElementById('v'));
};
window.behind = () => {
	const pd = window.hls && window.hls.playingDate;
	const v = document.getElementById('v');
	return pd && v.currentTime > 0 && !v.paused ? Date.now() - pd.getTime() : null;
};
</script></body></html>`;

async function hlsJsViewer(m3u8: string): Promise<{ browser: Browser; samples: number[]; stop: () => void }> {
	const require = createRequire(import.meta.url);
	const page = PAGE(fs.readFileSync(require.resolve('hls.js/dist/hls.min.js'), 'utf8'));
	const httpServer = http.createServer((_req, res) => {
		res.setHeader('Content-Type', 'text/html');
		res.end(page);
	});
	await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
	const browser = await chromium.launch({
		executablePath: '/usr/bin/chromium',
		headless: true,
		args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
	});
	browser.on('disconnected', () => httpServer.close());
	const tab = await browser.newPage();
	await tab.goto(`http://127.0.0.1:${(httpServer.address() as AddressInfo).port}/`);
	await tab.evaluate(`window.start(${JSON.stringify(m3u8)})`);
	const samples: number[] = [];
	let stopped = false;
	void (async () => {
		while (!stopped) {
			await new Promise((r) => setTimeout(r, 250));
			if (!measuring || stopped) continue;
			const b = await tab.evaluate<number | null>('window.behind()').catch(() => null);
			if (b !== null) samples.push(b);
		}
	})();
	return { browser, samples, stop: () => (stopped = true) };
}

// ------------------------------------------------------- packaging cost

/**
 * The packager alone: a pre-encoded 10 s clip (640x360, 25 fps, AAC) through
 * the Fragmenter, timed over several passes. Per frame and per part, so the
 * figure does not depend on how many streams a machine carries.
 */
async function packagingCost(): Promise<{ usPerFrame: number; usPerPart: number; msPerMediaSecond: number; parts: number }> {
	const ff = spawn(
		'ffmpeg',
		[
			'-hide_banner', '-loglevel', 'error', '-nostdin',
			'-f', 'lavfi', '-i', `testsrc2=size=640x360:rate=${FPS}:duration=10`,
			'-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=10',
			'-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', String(FPS), '-b:v', '800k',
			'-c:a', 'aac', '-b:a', '96k', '-f', 'flv', 'pipe:1',
		],
		{ stdio: ['ignore', 'pipe', 'ignore'] },
	);
	children.add(ff);
	const chunks: Buffer[] = [];
	ff.stdout.on('data', (c: Buffer) => chunks.push(c));
	await new Promise((r) => ff.once('exit', r));
	let buf = Buffer.concat(chunks).subarray(13);
	const demux = new FlvDemuxer();
	let video: VideoConfig | null = null;
	let audio: AacConfig | null = null;
	const frames: (VideoFrame | AudioFrame)[] = [];
	while (buf.length >= 15) {
		const size = buf.readUIntBE(1, 3);
		const ts = buf.readUIntBE(4, 3) | ((buf[7] ?? 0) << 24);
		const body = buf.subarray(11, 11 + size);
		const ev = buf[0] === FLV_TAG.VIDEO ? demux.video(ts, body, 0) : buf[0] === FLV_TAG.AUDIO ? demux.audio(ts, body, 0) : null;
		buf = buf.subarray(15 + size);
		if (ev?.type === 'videoConfig') video = ev.config;
		else if (ev?.type === 'audioConfig') audio = ev.config;
		else if (ev?.type === 'video') frames.push(ev.frame);
		else if (ev?.type === 'audio') frames.push(ev.frame);
	}
	const passes = 10;
	let parts = 0;
	const t0 = process.cpuUsage();
	for (let i = 0; i < passes; i++) {
		const f = new Fragmenter({ partTargetMs: 250, segmentTargetMs: 1000 });
		f.on('part', () => parts++);
		f.setVideoConfig(video);
		f.setAudioConfig(audio);
		for (const fr of frames) {
			if (fr.kind === 'video') f.pushVideo(fr);
			else f.pushAudio(fr);
		}
		f.finish();
	}
	const u = process.cpuUsage(t0);
	const us = u.user + u.system;
	return { usPerFrame: us / (frames.length * passes), usPerPart: us / parts, msPerMediaSecond: us / 1000 / (10 * passes), parts: parts / passes };
}

// ------------------------------------------------------------------- main

async function main(): Promise<void> {
	const hlsDir = path.join(tmp, 'ours');
	const config = loadConfig({
		env: {},
		file: null,
		overrides: {
			http: { host: '127.0.0.1', port: 0 },
			rtmp: { host: '127.0.0.1', port: 0 },
			rtc: { port: 0, listenIp: '127.0.0.1', announcedIp: '127.0.0.1', workers: 1 },
			hls: { dir: hlsDir },
			log: { level: 'silent' },
		},
	});
	const server = await Server.create(config, { logger: pino({ level: 'silent' }) });
	const nginx = await startNginx();
	const rtmp = server.rtmp;
	if (!rtmp) throw new Error('RTMP ingest is off');
	const ours = `http://127.0.0.1:${server.http.port}/hls/${STREAM}`;
	const theirs = `http://127.0.0.1:${nginx.httpPort}/hls`;

	// One encoder, three outputs written in the same loop iteration.
	const ffmpeg = spawn(
		'ffmpeg',
		[
			'-hide_banner', '-loglevel', 'error', '-nostdin', '-re',
			'-f', 'lavfi', '-i', `testsrc2=size=640x360:rate=${FPS}`,
			'-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
			'-map', '0:v', '-map', '1:a',
			'-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p',
			'-g', String(FPS), '-keyint_min', String(FPS), '-sc_threshold', '0', '-b:v', '800k',
			'-c:a', 'aac', '-b:a', '96k', '-ar', '48000', '-ac', '2',
			'-flags', '+global_header',
			'-f', 'tee',
			`[f=flv:onfail=ignore]rtmp://127.0.0.1:${rtmp.port}/${rtmp.app}/${STREAM}|[f=flv:onfail=ignore]rtmp://127.0.0.1:${nginx.rtmpPort}/live/${STREAM}|[f=flv]pipe:1`,
		],
		{ stdio: ['ignore', 'pipe', 'pipe'] },
	);
	children.add(ffmpeg);
	let ffErr = '';
	ffmpeg.stderr.setEncoding('utf8').on('data', (d: string) => (ffErr = (ffErr + d).slice(-4000)));
	ffmpeg.once('exit', (code) => {
		if (code !== null && code !== 0) console.error(`ffmpeg exited ${code}: ${ffErr}`);
	});
	readFlvPipe(ffmpeg.stdout);

	let done = false;
	const stop = (): boolean => done;
	const part = newSeries();
	const seg = newSeries();
	const ngx = newSeries();
	const clients = Promise.all([partClient(ours, part, stop), segmentClient(ours, seg, stop), nginxClient(theirs, ngx, stop)]);
	const viewer = await hlsJsViewer(`${ours}/index.m3u8`);

	await new Promise((r) => setTimeout(r, WARMUP_S * 1000));
	const cpu0 = { ours: process.cpuUsage(), nginx: nginx.pids().reduce((a, p) => a + procCpuSeconds(p), 0), t: performance.now() };
	measuring = true;
	console.error(`measuring for ${MEASURE_S} s ...`);
	await new Promise((r) => setTimeout(r, MEASURE_S * 1000));
	measuring = false;
	const seconds = (performance.now() - cpu0.t) / 1000;
	const oursCpu = (() => {
		const u = process.cpuUsage(cpu0.ours);
		return (u.user + u.system) / 1e6;
	})();
	const nginxCpu = nginx.pids().reduce((a, p) => a + procCpuSeconds(p), 0) - cpu0.nginx;
	done = true;
	viewer.stop();
	const [partHoldBack, ourTarget, ngxInfo] = await Promise.race([
		clients,
		new Promise<[number, number, { target: number; offsetMs: number }]>((r) => setTimeout(() => r([0.75, 1, { target: 1, offsetMs: NaN }]), 8000)),
	]);
	await viewer.browser.close();
	ffmpeg.kill('SIGKILL');
	nginx.proc.kill('SIGTERM');
	await server.close();
	setTimeout(() => nginx.proc.kill('SIGKILL'), 2000).unref();

	const row = (name: string, unit: string, s: Series, holdBackS: number): Record<string, number | string> => ({
		path: name,
		unit,
		units: s.units,
		frames: s.frames.length,
		unmatchedFrames: s.unmatched,
		frameP50: percentile(s.frames, 50),
		frameP95: percentile(s.frames, 95),
		frameP99: percentile(s.frames, 99),
		edgeP50: percentile(s.edges, 50),
		edgeP95: percentile(s.edges, 95),
		holdBackMs: holdBackS * 1000,
		playerP50: percentile(s.edges, 50) + holdBackS * 1000,
		playerP95: percentile(s.edges, 95) + holdBackS * 1000,
		kbitPerS: Math.round((s.bytes * 8) / seconds / 1000),
	});
	const rows = [
		row('subsecond LL-HLS (parts)', 'part', part, partHoldBack),
		row('subsecond HLS (segments)', 'segment', seg, 3 * ourTarget),
		row('nginx-rtmp HLS (hls_fragment 1s)', 'segment', ngx, 3 * ngxInfo.target),
	];
	if (ngx.units === 0) {
		const log = path.join(tmp, 'nginx', 'error.log');
		console.error(`nginx gave no segments; its log:\n${fs.existsSync(log) ? fs.readFileSync(log, 'utf8').slice(-2000) : '(none)'}\nffmpeg: ${ffErr}`);
	}
	const cost = await packagingCost();
	const hlsjs = { samples: viewer.samples.length, p50: percentile(viewer.samples, 50), p95: percentile(viewer.samples, 95) };
	const f = (n: unknown): string => (typeof n === 'number' ? (Number.isFinite(n) ? Math.round(n).toString() : '-') : String(n));
	const lines = [
		`## HLS delay: publish -> downloadable (ms), ${Math.round(seconds)} s of 640x360 ${FPS} fps, 1 s GOP`,
		'',
		'| path | unit | units | frame p50 | frame p95 | frame p99 | newest frame p50 | p95 | hold-back | player p50 | player p95 | kbit/s |',
		'|---|---|---|---|---|---|---|---|---|---|---|---|',
		...rows.map((r) =>
			`| ${r.path} | ${r.unit} | ${f(r.units)} | ${f(r.frameP50)} | ${f(r.frameP95)} | ${f(r.frameP99)} | ${f(r.edgeP50)} | ${f(r.edgeP95)} | ${f(r.holdBackMs)} | ${f(r.playerP50)} | ${f(r.playerP95)} | ${f(r.kbitPerS)} |`,
		),
		'',
		`hls.js 1.x in Chromium on our LL-HLS, picture on screen behind the publisher (playingDate): p50 ${f(hlsjs.p50)} ms, p95 ${f(hlsjs.p95)} ms (${hlsjs.samples} samples)`,
		'',
		`ratios (nginx / ours): frame p50 ${(Number(rows[2]!.frameP50) / Number(rows[0]!.frameP50)).toFixed(1)}x, player p50 ${(Number(rows[2]!.playerP50) / Number(rows[0]!.playerP50)).toFixed(1)}x`,
		`target: LL-HLS player p50 under 1500 ms: ${Number(rows[0]!.playerP50) < 1500 ? 'met' : 'NOT met'} (${f(rows[0]!.playerP50)} ms)`,
		`packaging alone (Fragmenter, 640x360 ~900 kbit/s with AAC): ${cost.usPerFrame.toFixed(1)} µs CPU per frame, ${cost.usPerPart.toFixed(0)} µs per part, ${cost.msPerMediaSecond.toFixed(2)} ms per second of media (${((cost.msPerMediaSecond / 1000) * 100).toFixed(2)}% of a core per stream)`,
		`CPU per second of media: subsecond process ${((oursCpu / seconds) * 1000).toFixed(0)} ms (RTMP ingest, bridge, HLS, the three bench clients); nginx ${((nginxCpu / seconds) * 1000).toFixed(0)} ms`,
		`nginx TS timestamps are RTMP time + ${f(ngxInfo.offsetMs)} ms; the nginx client polls every 50 ms (adds ~25 ms on average)`,
		`load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} on ${os.cpus().length} CPUs`,
	];
	console.log(lines.join('\n'));
	const results = {
		date: new Date().toISOString(),
		seconds,
		fps: FPS,
		rows,
		hlsjs,
		cpuMsPerSecond: { subsecond: (oursCpu / seconds) * 1000, nginx: (nginxCpu / seconds) * 1000 },
		packaging: cost,
		nginxTsOffsetMs: ngxInfo.offsetMs,
		loadavg: os.loadavg(),
		cpus: os.cpus().length,
	};
	fs.mkdirSync(path.join(import.meta.dirname, 'results'), { recursive: true });
	fs.writeFileSync(path.join(import.meta.dirname, 'results', 'hls-latency.json'), `${JSON.stringify(results, null, 2)}\n`);
}

main().then(
	() => process.exit(0),
	(err: unknown) => {
		console.error(err);
		killAll();
		process.exit(1);
	},
);
