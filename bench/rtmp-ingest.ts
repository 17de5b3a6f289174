/**
 * RTMP ingest benchmark: the CPU the ingest costs per publisher and the delay
 * from the last byte of a video message arriving to its frame reaching the
 * stream core, for 1 and for 10 concurrent 720p30 publishers.
 *
 *   node --import tsx bench/rtmp-ingest.ts
 *
 * The RTMP server runs in this process (RtmpServer + StreamRegistry, nothing
 * else), so process.cpuUsage() is the ingest's CPU and excludes ffmpeg's.
 * Publishers replay a pre-encoded 720p30 H.264 + AAC file (1 s GOP) with
 * `ffmpeg -re -stream_loop -1 -c copy`: encoding ten 720p30 streams live
 * would saturate a 2-core machine and measure x264 instead of us.
 *
 * "Delay" starts when the socket read holding the message's last byte reaches
 * JavaScript (the frame's receivedAt) and ends when the Publication emits the
 * frame: chunk reassembly, FLV demux and fan-out. Time the read spent queued
 * in the kernel or behind other event-loop work is not in it.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { RtmpServer } from '../ingest/rtmp/index.js';
import { StreamRegistry } from '../server/core/stream.js';
import { ChildSet } from '../test/helpers/children.js';

const WIDTH = 1280;
const HEIGHT = 720;
const FPS = 30;
const CLIP_SECONDS = 10;
const SCENARIOS = process.env.BENCH_REVERSE ? [{ publishers: 10, measureSeconds: 20 }, { publishers: 1, measureSeconds: 15 }] : [
	{ publishers: 1, measureSeconds: 15 },
	{ publishers: 10, measureSeconds: 20 },
];
const WARMUP_SECONDS = 3;
const FLOOR_SECONDS = 10;

const logger = pino({ level: process.env.BENCH_LOG ?? 'silent' });
const children = new ChildSet();

function run(args: string[]): Promise<void> {
	return new Promise((resolve, reject) => {
		const child = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
		let err = '';
		child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
		child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg failed (${code}): ${err}`))));
	});
}

/** The 720p30 clip, encoded once and kept in the temp folder between runs. */
async function clip(): Promise<string> {
	const dir = path.join(os.tmpdir(), 'subsecond-bench');
	fs.mkdirSync(dir, { recursive: true });
	const file = path.join(dir, `rtmp-${WIDTH}x${HEIGHT}p${FPS}-${CLIP_SECONDS}s.flv`);
	if (fs.existsSync(file)) return file;
	console.log(`encoding the ${WIDTH}x${HEIGHT}p${FPS} test clip once: ${file}`);
	const tmp = `${file}.part`;
	await run([
		'-hide_banner', '-loglevel', 'error', '-y',
		'-f', 'lavfi', '-i', `testsrc2=size=${WIDTH}x${HEIGHT}:rate=${FPS}:duration=${CLIP_SECONDS}`,
		'-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${CLIP_SECONDS}`,
		'-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'main', '-pix_fmt', 'yuv420p',
		'-g', String(FPS), '-keyint_min', String(FPS), '-sc_threshold', '0', '-bf', '0', '-b:v', '3000k', '-maxrate', '3000k', '-bufsize', '3000k',
		'-c:a', 'aac', '-b:a', '128k', '-ac', '2',
		'-f', 'flv', tmp,
	]);
	fs.renameSync(tmp, file);
	return file;
}

function publish(file: string, url: string): ChildProcess {
	return publishTo(file, 'flv', url);
}

function publishTo(file: string, format: string, url: string): ChildProcess {
	const child = spawn(
		'ffmpeg',
		['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-stream_loop', '-1', '-i', file, '-c', 'copy', '-f', format, url],
		{ stdio: ['ignore', 'ignore', 'ignore'] },
	);
	return children.add(child);
}

function percentile(sorted: number[], p: number): number {
	if (sorted.length === 0) return Number.NaN;
	return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Row {
	publishers: number;
	seconds: number;
	cpuMs: number;
	reads: number;
	videoFrames: number;
	audioFrames: number;
	mbitIn: number;
	delayUs: number[];
}

async function scenario(file: string, publishers: number, measureSeconds: number): Promise<Row> {
	const registry = new StreamRegistry({ logger, maxStreams: 100 });
	const rtmp = await RtmpServer.create({
		host: '127.0.0.1',
		port: 0,
		app: 'live',
		handshakeTimeoutMs: 5000,
		idleTimeoutMs: 15_000,
		publishTimeoutMs: 10_000,
		maxMessageSize: 8 * 1024 * 1024,
		maxConnections: 256,
		outChunkSize: 4096,
		registry,
		logger,
	});
	let measuring = false;
	let videoFrames = 0;
	let audioFrames = 0;
	const delays: number[] = [];
	registry.on('publish', (_stream, pub) => {
		pub.on('video', (f) => {
			if (!measuring) return;
			videoFrames++;
			delays.push(performance.now() - f.receivedAt);
		});
		pub.on('audio', () => {
			if (measuring) audioFrames++;
		});
	});
	try {
		for (let i = 0; i < publishers; i++) publish(file, `rtmp://127.0.0.1:${rtmp.port}/live/bench${i}`);
		const liveBy = Date.now() + 20_000;
		while (registry.liveStreams().length < publishers) {
			if (Date.now() > liveBy) throw new Error(`only ${registry.liveStreams().length} of ${publishers} publishers went live`);
			await sleep(100);
		}
		await sleep(WARMUP_SECONDS * 1000);
		const bytes0 = rtmp.stats().bytesIn;
		const reads0 = rtmp.stats().reads;
		const cpu0 = process.cpuUsage();
		const t0 = performance.now();
		measuring = true;
		await sleep(measureSeconds * 1000);
		measuring = false;
		const cpu = process.cpuUsage(cpu0);
		const seconds = (performance.now() - t0) / 1000;
		const bytes = rtmp.stats().bytesIn - bytes0;
		const reads = rtmp.stats().reads - reads0;
		if (registry.liveStreams().length < publishers) throw new Error('a publisher dropped out during the measurement');
		return {
			publishers,
			seconds,
			cpuMs: (cpu.user + cpu.system) / 1000,
			reads,
			videoFrames,
			audioFrames,
			mbitIn: (bytes * 8) / seconds / 1e6,
			delayUs: delays.map((d) => d * 1000).sort((a, b) => a - b),
		};
	} finally {
		await children.killAll();
		registry.close();
		await rtmp.close();
	}
}

/**
 * The floor: the same FLV bytes from the same ffmpeg into a TCP socket that
 * does nothing with them. What a Node socket costs per read on this machine,
 * whatever the protocol; the RTMP figures are read against it.
 */
async function tcpFloor(file: string, publishers: number): Promise<{ cpuMs: number; seconds: number; reads: number }> {
	let reads = 0;
	const server = net.createServer((s) => {
		s.on('data', () => reads++);
		s.on('error', () => undefined);
	});
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	const port = (server.address() as net.AddressInfo).port;
	try {
		for (let i = 0; i < publishers; i++) publishTo(file, 'flv', `tcp://127.0.0.1:${port}`);
		await sleep(WARMUP_SECONDS * 1000);
		const cpu0 = process.cpuUsage();
		const reads0 = reads;
		const t0 = performance.now();
		await sleep(FLOOR_SECONDS * 1000);
		const cpu = process.cpuUsage(cpu0);
		return { cpuMs: (cpu.user + cpu.system) / 1000, seconds: (performance.now() - t0) / 1000, reads: reads - reads0 };
	} finally {
		await children.killAll();
		await new Promise<void>((resolve) => server.close(() => resolve()));
	}
}

function fmt(n: number, digits = 1): string {
	return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

async function main(): Promise<void> {
	const file = await clip();
	console.log(`RTMP ingest benchmark: ${WIDTH}x${HEIGHT}p${FPS} H.264 + AAC, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
	const rows: Row[] = [];
	const floors = new Map<number, { cpuMs: number; seconds: number; reads: number }>();
	for (const s of SCENARIOS) {
		console.log(`measuring ${s.publishers} publisher(s) for ${s.measureSeconds} s, then the bare TCP floor for ${FLOOR_SECONDS} s...`);
		rows.push(await scenario(file, s.publishers, s.measureSeconds));
		floors.set(s.publishers, await tcpFloor(file, s.publishers));
	}
	const table = rows.map((r) => {
		const cpuPct = (r.cpuMs / 1000 / r.seconds) * 100;
		const frames = r.videoFrames + r.audioFrames;
		const floor = floors.get(r.publishers);
		const floorPct = floor ? (floor.cpuMs / 1000 / floor.seconds) * 100 : Number.NaN;
		return {
			publishers: r.publishers,
			'in Mbit/s': fmt(r.mbitIn),
			'video fps (all)': fmt(r.videoFrames / r.seconds),
			'reads/s': fmt(r.reads / r.seconds, 0),
			'server CPU ms': fmt(r.cpuMs, 0),
			'CPU % (1 core)': fmt(cpuPct, 2),
			'CPU % per publisher': fmt(cpuPct / r.publishers, 2),
			'TCP floor CPU %': fmt(floorPct, 2),
			'CPU % / floor': fmt(cpuPct / floorPct, 2),
			'µs CPU per video frame': fmt((r.cpuMs * 1000) / r.videoFrames, 0),
			'µs CPU per frame (a+v)': fmt((r.cpuMs * 1000) / frames, 0),
			'delay p50 µs': fmt(percentile(r.delayUs, 50)),
			'delay p95 µs': fmt(percentile(r.delayUs, 95)),
			'delay p99 µs': fmt(percentile(r.delayUs, 99)),
		};
	});
	console.table(table);
	const one = rows.find((r) => r.publishers === 1);
	const ten = rows.find((r) => r.publishers === 10);
	if (one && ten) {
		const perPub = (r: Row): number => r.cpuMs / r.seconds / r.publishers;
		console.log(
			`per-publisher CPU at 10 publishers is ${fmt(perPub(ten) / perPub(one), 2)}x that at 1; ` +
				`p99 delay ratio 10:1 = ${fmt(percentile(ten.delayUs, 99) / percentile(one.delayUs, 99), 2)}`,
		);
	}
	console.log(
		'CPU includes everything in this process (RTMP parsing, FLV demux, registry fan-out, GC); ffmpeg is excluded. ' +
			'The TCP floor is the same bytes into sockets that do nothing: the cost of socket reads alone on this machine.',
	);
}

main().catch(async (err: unknown) => {
	console.error(err);
	await children.killAll();
	process.exitCode = 1;
});
