/**
 * Viewer load benchmark: what each WebRTC viewer costs the server.
 *
 *   node --import tsx bench/viewers.ts            (levels 10, 50, 100, 200)
 *   BENCH_LEVELS=10,50 node --import tsx bench/viewers.ts
 *
 * One 720p30 stream (H.264 constrained baseline, 1 s GOP, ~2 Mbit/s CBR, and
 * Opus) is pre-encoded once and replayed with `ffmpeg -re -stream_loop -1
 * -c copy -f rtp` into PlainTransports on the stream's origin router, the
 * way the ingest bridge feeds it. The server (signaling, mediasoup workers)
 * runs in this process; the viewers (client/node, werift, counting packets,
 * not decoding) run in a child process, so the server's CPU below excludes
 * theirs: it is this process plus the mediasoup worker processes, read from
 * /proc. Memory is the same processes' RSS.
 *
 * For each level the viewers are added (on top of the previous level's),
 * each must receive a keyframe, then CPU, memory and packets are measured
 * over a window. Per-viewer figures subtract the baseline with the stream
 * flowing and no viewer. Beside what the viewers counted, the table shows
 * what mediasoup sent them and how many datagrams the host dropped for full
 * socket buffers: when the viewer processes cannot keep up, that tells the
 * load generator's limit from the server's. The load viewers do not NACK
 * (BENCH_NACK=1 makes them), so a starved generator does not make the
 * server resend. The run stops at the first level whose viewers do not all
 * get the full packet rate. The machine is small and shared: read the
 * per-viewer costs and ratios, not the absolute times.
 *
 * Environment: BENCH_LEVELS (default 10,50,100,200), BENCH_WINDOW_S (10),
 * BENCH_VIEWER_PROCS (one per core), BENCH_NACK, BENCH_LOG (a pino level).
 */
import { execFileSync, fork, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { NodeViewer } from '../client/node/index.js';
import { loadConfig } from '../server/config/load.js';
import { Server } from '../server/server.js';
import { publishRtp } from '../test/signaling/helpers.js';

const STREAM = 'bench720';
const LEVELS = (process.env.BENCH_LEVELS ?? '10,50,100,200').split(',').map(Number).filter((n) => n > 0);
const WINDOW_S = Number(process.env.BENCH_WINDOW_S ?? 10);
const SETTLE_S = 2;
const BASELINE_S = 5;
const JOIN_TIMEOUT_S = 40;
const JOIN_CONCURRENCY = 8;
/** Viewer processes: werift costs more CPU per viewer than the server does, and one Node process uses one core. */
const VIEWER_PROCS = Number(process.env.BENCH_VIEWER_PROCS ?? Math.max(1, os.availableParallelism()));
const TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
const here = fileURLToPath(import.meta.url);
/** Load viewers do not ask for retransmissions unless BENCH_NACK=1 (see NodeViewerOptions.nack). */
const NACK = process.env.BENCH_NACK === '1';

// ---------------------------------------------------------------------------
// Viewer side (child process)

type ToChild = { type: 'add'; count: number; server: string } | { type: 'sample' } | { type: 'quit' };
interface ViewerSample {
	video: number;
	audio: number;
	bytes: number;
	keyframes: number;
	ttfk: number | null;
}
type FromChild =
	| { type: 'added'; total: number; failed: number; errors: string[] }
	| { type: 'sample'; at: number; viewers: ViewerSample[] }
	| { type: 'quitting' };

function child(): void {
	const viewers: NodeViewer[] = [];
	const send = (m: FromChild): void => void process.send?.(m);
	process.on('message', (m: ToChild) => {
		if (m.type === 'add') {
			void (async () => {
				let failed = 0;
				const errors: string[] = [];
				let left = m.count;
				const worker = async (): Promise<void> => {
					while (left > 0) {
						left--;
						try {
							viewers.push(await NodeViewer.create({ server: m.server, stream: STREAM, iceAddress: '127.0.0.1', requestTimeoutMs: 30_000, nack: NACK }));
						} catch (err) {
							failed++;
							if (errors.length < 3) errors.push((err as Error).message);
						}
					}
				};
				await Promise.all(Array.from({ length: JOIN_CONCURRENCY }, worker));
				send({ type: 'added', total: viewers.length, failed, errors });
			})();
		} else if (m.type === 'sample') {
			send({
				type: 'sample',
				at: performance.now(),
				viewers: viewers.map((v) => ({
					video: v.video.packets,
					audio: v.audio.packets,
					bytes: v.video.bytes + v.audio.bytes,
					keyframes: v.video.keyframes,
					ttfk: v.timeToFirstKeyframeMs,
				})),
			});
		} else {
			void (async () => {
				send({ type: 'quitting' });
				await Promise.allSettled(viewers.map((v) => v.close()));
				process.exit(0);
			})();
		}
	});
}

// ---------------------------------------------------------------------------
// Server side (this process)

function cpuSeconds(pid: number): number {
	const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
	const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
	return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

function rssMb(pid: number): number {
	const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
	return m ? Number(m[1]) / 1024 : 0;
}

/** The host's UDP datagrams dropped because a receive buffer was full (all processes). */
function udpRcvbufErrors(): number {
	const lines = fs.readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
	const names = lines[0]?.split(/\s+/) ?? [];
	const values = lines[1]?.split(/\s+/) ?? [];
	const i = names.indexOf('RcvbufErrors');
	return i > 0 ? Number(values[i]) : 0;
}

function quantile(sorted: number[], q: number): number {
	if (sorted.length === 0) return NaN;
	return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function encodeClip(): Promise<string> {
	const file = path.join(os.tmpdir(), 'subsecond-bench-720p30-baseline-opus.ts');
	if (fs.existsSync(file) && fs.statSync(file).size > 1_000_000) return file;
	console.error('encoding the 720p30 clip once...');
	await new Promise<void>((resolve, reject) => {
		const ff = spawn(
			'ffmpeg',
			[
				'-hide_banner', '-loglevel', 'error', '-y',
				'-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
				'-t', '10',
				'-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p',
				'-g', '30', '-keyint_min', '30', '-sc_threshold', '0',
				'-b:v', '2M', '-minrate', '2M', '-maxrate', '2M', '-bufsize', '1M', '-x264-params', 'nal-hrd=cbr',
				'-c:a', 'libopus', '-b:a', '64k', '-ac', '2', '-ar', '48000',
				'-f', 'mpegts', file,
			],
			{ stdio: ['ignore', 'ignore', 'inherit'] },
		);
		ff.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited with ${code}`))));
	});
	return file;
}

interface Usage {
	cpu: number;
	rss: number;
	workersRss: number;
	childCpu: number;
	at: number;
}

interface LevelResult {
	viewers: number;
	joined: number;
	joinFailures: number;
	receiving: number;
	rampSeconds: number;
	serverCpuPct: number;
	cpuPerViewerPct: number;
	serverRssMb: number;
	rssPerViewerMb: number;
	workersRssMb: number;
	workersRssPerViewerKb: number;
	/** What mediasoup sent per viewer (RTP + RTX), beside what the viewers counted. */
	sentKbitPerViewer: number;
	/** Datagrams/s the host dropped for full receive buffers (the viewers' sockets, mostly). */
	udpRcvbufDropsPerS: number;
	viewerProcessCpuPct: number;
	workers: Record<string, number>;
	videoPktsPerViewerPerS: { p5: number; p50: number; mean: number };
	audioPktsPerViewerPerS: { p5: number; p50: number; mean: number };
	kbitPerViewer: number;
	timeToFirstKeyframeMs: { p50: number; p95: number; p99: number };
	cpuPerViewerRatioTo10: number | null;
	/** Every viewer joined and got at least 80 % of the packet rate the first level got. */
	healthy: boolean;
}

async function main(): Promise<void> {
	const clip = await encodeClip();
	const config = loadConfig({
		env: {},
		file: null,
		overrides: {
			http: { host: '127.0.0.1', port: 0 },
			rtmp: { enabled: false },
			rtc: { port: 0, listenIp: '127.0.0.1', announcedIp: '127.0.0.1', workers: 0 },
			hls: { enabled: false },
			streams: { maxViewersPerStream: 10_000 },
			signaling: { maxRequestsPerSecond: 1000 },
			log: { level: 'silent' },
		},
	});
	const server = await Server.create(config, { logger: pino({ level: process.env.BENCH_LOG ?? 'silent' }) });
	const url = `http://127.0.0.1:${server.http.port}`;
	const pub = await publishRtp(server, STREAM, { file: clip });
	await pub.flowing();

	const pids = (): number[] => [process.pid, ...server.pool.slots.map((s) => s.worker.pid)];
	const workerCount = server.pool.slots.length;
	const procs: ChildProcess[] = Array.from({ length: VIEWER_PROCS }, () =>
		fork(here, ['--viewers'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
	);
	const askOne = <T extends FromChild['type']>(proc: ChildProcess, m: ToChild, reply: T): Promise<Extract<FromChild, { type: T }>> =>
		new Promise((resolve) => {
			const on = (r: FromChild): void => {
				if (r.type !== reply) return;
				proc.off('message', on);
				resolve(r as Extract<FromChild, { type: T }>);
			};
			proc.on('message', on);
			proc.send(m);
		});
	const sample = async (): Promise<{ at: number; viewers: ViewerSample[] }> => {
		const all = await Promise.all(procs.map((p) => askOne(p, { type: 'sample' }, 'sample')));
		return { at: Math.max(...all.map((a) => a.at)), viewers: all.flatMap((a) => a.viewers) };
	};
	/** Adds viewers spread evenly over the viewer processes. */
	const add = async (count: number): Promise<{ total: number; errors: string[] }> => {
		const share = procs.map((_, i) => Math.floor(count / procs.length) + (i < count % procs.length ? 1 : 0));
		const all = await Promise.all(procs.map((p, i) => askOne(p, { type: 'add', count: share[i] ?? 0, server: url }, 'added')));
		return { total: all.reduce((a, r) => a + r.total, 0), errors: all.flatMap((r) => r.errors) };
	};
	const usage = (): Usage => ({
		cpu: pids().reduce((s, p) => s + cpuSeconds(p), 0),
		rss: pids().reduce((s, p) => s + rssMb(p), 0),
		workersRss: server.pool.slots.reduce((s, w) => s + rssMb(w.worker.pid), 0),
		childCpu: procs.reduce((s, p) => s + (p.pid ? cpuSeconds(p.pid) : 0), 0),
		at: performance.now(),
	});
	const sleep = (s: number): Promise<void> => new Promise((r) => setTimeout(r, s * 1000));
	const load0 = os.loadavg();
	const started = Date.now();

	// Baseline: the stream flows into the origin router, nobody watches.
	await sleep(1);
	const b0 = usage();
	await sleep(BASELINE_S);
	const b1 = usage();
	const baseline = { serverCpuPct: ((b1.cpu - b0.cpu) / ((b1.at - b0.at) / 1000)) * 100, serverRssMb: b1.rss, workersRssMb: b1.workersRss };
	const sentBytes = async (): Promise<number> => (await server.signaling!.transportStats()).reduce((a, t) => a + t.rtpBytesSent + t.rtxBytesSent, 0);
	console.error(`baseline: ${baseline.serverCpuPct.toFixed(1)} % CPU, ${baseline.serverRssMb.toFixed(0)} MB`);

	const results: LevelResult[] = [];
	let current = 0;
	let maxReached = 0;
	for (const level of LEVELS) {
		const t0 = performance.now();
		const added = await add(level - current);
		current = added.total;
		if (added.errors.length > 0) console.error(`join failures: ${added.errors.join('; ')}`);
		// Every viewer must have had a keyframe before we measure.
		const deadline = performance.now() + JOIN_TIMEOUT_S * 1000;
		let s = await sample();
		while (s.viewers.some((v) => v.keyframes === 0) && performance.now() < deadline) {
			await sleep(0.5);
			s = await sample();
		}
		const rampSeconds = (performance.now() - t0) / 1000;
		await sleep(SETTLE_S);
		const sent0 = await sentBytes();
		const drops0 = udpRcvbufErrors();
		const u0 = usage();
		const s0 = await sample();
		await sleep(WINDOW_S);
		const u1 = usage();
		const s1 = await sample();
		const sent1 = await sentBytes();
		const drops1 = udpRcvbufErrors();
		const secs = (u1.at - u0.at) / 1000;
		const sampleSecs = (s1.at - s0.at) / 1000;
		const perViewer = s1.viewers.map((v, i) => {
			const p = s0.viewers[i] ?? { video: 0, audio: 0, bytes: 0 };
			return { video: (v.video - p.video) / sampleSecs, audio: (v.audio - p.audio) / sampleSecs, kbit: ((v.bytes - p.bytes) * 8) / 1000 / sampleSecs };
		});
		const vids = perViewer.map((v) => v.video).sort((a, b) => a - b);
		const auds = perViewer.map((v) => v.audio).sort((a, b) => a - b);
		const ttfk = s1.viewers.flatMap((v) => (v.ttfk === null ? [] : [v.ttfk])).sort((a, b) => a - b);
		const workers: Record<string, number> = {};
		for (const sess of server.signaling!.sessions()) {
			const w = `worker ${sess.worker ?? '?'}`;
			workers[w] = (workers[w] ?? 0) + 1;
		}
		const serverCpuPct = ((u1.cpu - u0.cpu) / secs) * 100;
		const n = current;
		const r: LevelResult = {
			viewers: level,
			joined: n,
			joinFailures: level - n,
			receiving: perViewer.filter((v) => v.video > 0 && v.audio > 0).length,
			rampSeconds: Math.round(rampSeconds * 10) / 10,
			serverCpuPct: Math.round(serverCpuPct * 10) / 10,
			cpuPerViewerPct: n > 0 ? Math.round(((serverCpuPct - baseline.serverCpuPct) / n) * 1000) / 1000 : 0,
			serverRssMb: Math.round(u1.rss),
			rssPerViewerMb: n > 0 ? Math.round(((u1.rss - baseline.serverRssMb) / n) * 100) / 100 : 0,
			workersRssMb: Math.round(u1.workersRss),
			workersRssPerViewerKb: n > 0 ? Math.round(((u1.workersRss - baseline.workersRssMb) * 1024) / n) : 0,
			sentKbitPerViewer: n > 0 ? Math.round(((sent1 - sent0) * 8) / 1000 / secs / n) : 0,
			udpRcvbufDropsPerS: Math.round((drops1 - drops0) / secs),
			viewerProcessCpuPct: Math.round(((u1.childCpu - u0.childCpu) / secs) * 1000) / 10,
			workers,
			videoPktsPerViewerPerS: { p5: Math.round(quantile(vids, 0.05)), p50: Math.round(quantile(vids, 0.5)), mean: Math.round(vids.reduce((a, b) => a + b, 0) / Math.max(1, vids.length)) },
			audioPktsPerViewerPerS: { p5: Math.round(quantile(auds, 0.05)), p50: Math.round(quantile(auds, 0.5)), mean: Math.round(auds.reduce((a, b) => a + b, 0) / Math.max(1, auds.length)) },
			kbitPerViewer: Math.round(perViewer.reduce((a, v) => a + v.kbit, 0) / Math.max(1, perViewer.length)),
			timeToFirstKeyframeMs: { p50: Math.round(quantile(ttfk, 0.5)), p95: Math.round(quantile(ttfk, 0.95)), p99: Math.round(quantile(ttfk, 0.99)) },
			cpuPerViewerRatioTo10: null,
			healthy: false,
		};
		const reference = results[0]?.videoPktsPerViewerPerS.p50 ?? r.videoPktsPerViewerPerS.p50;
		r.healthy = r.receiving === level && r.videoPktsPerViewerPerS.p5 >= 0.8 * reference;
		results.push(r);
		if (r.healthy) maxReached = Math.max(maxReached, r.receiving);
		console.error(`${level} viewers: ${JSON.stringify(r)}`);
		if (!r.healthy || (Date.now() - started) / 1000 > 200) {
			console.error(
				`stopping at ${level}: ${r.receiving} viewers receive media, p5 ${r.videoPktsPerViewerPerS.p5} video packets/s against ${reference} at the first level ` +
					`(viewer processes use ${r.viewerProcessCpuPct} % CPU of ${os.availableParallelism() * 100} %), or the time budget is spent`,
			);
			break;
		}
	}
	const first = results[0];
	for (const r of results) r.cpuPerViewerRatioTo10 = first && first.cpuPerViewerPct > 0 ? Math.round((r.cpuPerViewerPct / first.cpuPerViewerPct) * 100) / 100 : null;

	await Promise.all(
		procs.map(async (p) => {
			const exited = new Promise<void>((resolve) => {
				if (p.exitCode !== null) resolve();
				else p.once('exit', () => resolve());
			});
			await askOne(p, { type: 'quit' }, 'quitting');
			await exited;
		}),
	);
	await pub.stop();
	await server.close();

	const load1 = os.loadavg();
	const out = {
		date: new Date().toISOString(),
		machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? 'unknown', loadavgBefore: load0, loadavgAfter: load1 },
		stream: { video: 'H.264 constrained baseline 1280x720 30 fps, 1 s GOP, 2 Mbit/s CBR', audio: 'Opus 64 kbit/s stereo', source: 'ffmpeg -re -stream_loop -1 -c copy -f rtp into PlainTransports' },
		workers: workerCount,
		viewerProcesses: VIEWER_PROCS,
		windowSeconds: WINDOW_S,
		baseline,
		levels: results,
		maxHealthyViewers: maxReached,
		durationSeconds: Math.round((Date.now() - started) / 1000),
	};
	const dir = path.join(path.dirname(here), 'results');
	fs.mkdirSync(dir, { recursive: true });
	fs.writeFileSync(path.join(dir, 'viewers.json'), `${JSON.stringify(out, null, 2)}\n`);

	const lines = [
		`## WebRTC viewers of one 720p30 stream (${out.machine.cpus} cores, ${out.workers} mediasoup workers, viewers in ${VIEWER_PROCS} processes, load average ${load0[0]?.toFixed(1)} → ${load1[0]?.toFixed(1)})`,
		'',
		`Baseline (stream flowing, no viewer): server ${baseline.serverCpuPct.toFixed(1)} % of a core, ${baseline.serverRssMb.toFixed(0)} MB.`,
		'',
		'| viewers | receiving | full rate | server CPU (% of a core) | CPU per viewer (% of a core) | ratio to first level | server RSS (MB) | RSS per viewer (MB) | worker RSS per viewer (KB) | spread over workers | sent kbit/s per viewer | received kbit/s per viewer | video pkt/s per viewer p5 / p50 | audio pkt/s p50 | UDP drops/s (host) | first keyframe after join p50 / p95 / p99 (ms) | viewer processes CPU (%) |',
		'|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|',
		...results.map(
			(r) =>
				`| ${r.viewers} | ${r.receiving} | ${r.healthy ? 'yes' : 'no'} | ${r.serverCpuPct} | ${r.cpuPerViewerPct} | ${r.cpuPerViewerRatioTo10 ?? '-'} | ${r.serverRssMb} | ${r.rssPerViewerMb} | ${r.workersRssPerViewerKb} | ${Object.entries(r.workers)
					.sort()
					.map(([w, c]) => `${w}: ${c}`)
					.join(', ')} | ${r.sentKbitPerViewer} | ${r.kbitPerViewer} | ${r.videoPktsPerViewerPerS.p5} / ${r.videoPktsPerViewerPerS.p50} | ${r.audioPktsPerViewerPerS.p50} | ${r.udpRcvbufDropsPerS} | ${r.timeToFirstKeyframeMs.p50} / ${r.timeToFirstKeyframeMs.p95} / ${r.timeToFirstKeyframeMs.p99} | ${r.viewerProcessCpuPct} |`,
		),
		'',
		`Most viewers served at the full packet rate on this machine: ${maxReached}. Results: bench/results/viewers.json (${out.durationSeconds} s).`,
	];
	console.log(lines.join('\n'));
}

if (process.argv.includes('--viewers')) {
	child();
} else {
	await main();
}
