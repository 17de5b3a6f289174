/**
 * Ingest bridge benchmark: the delay the bridge adds and what it costs.
 *
 *   node --import tsx bench/bridge-latency.ts
 *
 * Delay: from a frame fully received (frame.receivedAt, when its last byte
 * reached JavaScript) to its first RTP packet leaving a mediasoup consumer
 * (a PlainTransport consumer sending to a UDP socket here), matched by RTP
 * timestamp. So it covers the bridge and mediasoup's forwarding, not the
 * publisher's network. Video passthrough, video through the transcoder, and
 * audio through the AAC-to-Opus transcoder (an Opus packet is matched to the
 * AAC frame holding the end of its audio: it cannot leave before that frame
 * arrived).
 *
 * Cost: CPU of this process (process.cpuUsage: the bridge, the FLV parsing
 * of the publisher pipe, the probes), of the bridge's ffmpeg children
 * (/proc/<pid>/stat) and of the mediasoup worker (getResourceUsage), per
 * stream and per frame. Only the registry, the worker pool, the routers and
 * the bridge run here: no HLS or signaling to blur the figures.
 *
 * Publishers replay pre-encoded clips with `ffmpeg -re -stream_loop -1 -c
 * copy`, so x264 work for the sources is not measured. The machine is
 * shared: the load average is printed beside the figures.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { Bridge, FlvReader, parseRtpHeader, opusPacketSamples } from '../ingest/bridge/index.js';
import type { BridgeSession, BridgeSettings } from '../ingest/bridge/index.js';
import { FLV_TAG, FlvDemuxer } from '../ingest/rtmp/flv.js';
import { StreamRegistry } from '../server/core/stream.js';
import type { Publication } from '../server/core/stream.js';
import { StreamRouters } from '../server/sfu/stream-routers.js';
import { WorkerPool } from '../server/sfu/worker-pool.js';

const WIDTH = Number(process.env.BENCH_WIDTH ?? 1280);
const HEIGHT = Number(process.env.BENCH_HEIGHT ?? 720);
const FPS = 30;
const CLIP_SECONDS = 10;
const WARMUP_SECONDS = 4;
const MEASURE_SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
const CLK_TCK = 100;

type ClipKind = 'main' | 'obs' | 'high';

interface Scenario {
	name: string;
	clip: ClipKind;
	streams: number;
}
const ALL_SCENARIOS: Scenario[] = [
	{ name: 'passthrough', clip: 'main', streams: 1 },
	{ name: 'transcode', clip: 'obs', streams: 1 },
	// High without B-frames: transcoded too, without the decoder's reorder wait.
	{ name: 'transcode, no B-frames', clip: 'high', streams: 1 },
	{ name: 'passthrough x4', clip: 'main', streams: 4 },
];
// BENCH_ONLY=transcode runs one scenario (for profiling).
const SCENARIOS = process.env.BENCH_ONLY ? ALL_SCENARIOS.filter((s) => s.name === process.env.BENCH_ONLY) : ALL_SCENARIOS;

const logger = pino({ level: process.env.BENCH_LOG ?? 'silent' });
const children = new Set<ChildProcess>();

function run(args: string[]): Promise<void> {
	return new Promise((resolve, reject) => {
		const child = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
		let err = '';
		child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
		child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg failed (${code}): ${err}`))));
	});
}

/** The clips, encoded once and kept between runs: Main without B-frames, OBS-like High with B-frames, High without. */
async function clip(kind: ClipKind): Promise<string> {
	const dir = path.join(os.tmpdir(), 'subsecond-bench');
	fs.mkdirSync(dir, { recursive: true });
	const file = path.join(dir, `bridge-${kind}-${WIDTH}x${HEIGHT}p${FPS}-${CLIP_SECONDS}s.flv`);
	if (fs.existsSync(file)) return file;
	console.log(`encoding the ${kind} test clip once: ${file}`);
	const video = {
		main: ['-profile:v', 'main', '-bf', '0', '-tune', 'zerolatency'],
		obs: ['-profile:v', 'high', '-bf', '2', '-x264-params', 'b-adapt=0:rc-lookahead=10'],
		high: ['-profile:v', 'high', '-bf', '0', '-tune', 'zerolatency'],
	}[kind];
	const tmp = `${file}.part`;
	await run([
		'-hide_banner', '-loglevel', 'error', '-y',
		'-f', 'lavfi', '-i', `testsrc2=size=${WIDTH}x${HEIGHT}:rate=${FPS}:duration=${CLIP_SECONDS}`,
		'-f', 'lavfi', '-i', `sine=frequency=440:sample_rate=48000:duration=${CLIP_SECONDS}`,
		'-c:v', 'libx264', '-preset', 'veryfast', ...video, '-pix_fmt', 'yuv420p',
		'-g', String(FPS), '-keyint_min', String(FPS), '-sc_threshold', '0', '-b:v', '2500k', '-maxrate', '2500k', '-bufsize', '2500k',
		'-c:a', 'aac', '-b:a', '128k', '-ac', '2', '-ar', '48000',
		'-f', 'flv', tmp,
	]);
	fs.renameSync(tmp, file);
	return file;
}

/** Publishes a clip into the registry from an ffmpeg FLV pipe, timestamps as ffmpeg writes them. */
function publish(registry: StreamRegistry, name: string, file: string): { publication: Publication; child: ChildProcess } {
	const child = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-stream_loop', '-1', '-i', file, '-c', 'copy', '-f', 'flv', 'pipe:1'], {
		stdio: ['ignore', 'pipe', 'ignore'],
	});
	children.add(child);
	child.once('exit', () => children.delete(child));
	const publication = registry.publish(name, { protocol: 'rtmp', remoteAddress: '127.0.0.1', kick: () => child.kill('SIGKILL') });
	const demux = new FlvDemuxer();
	let now = 0;
	const reader = new FlvReader((tag) => {
		if (publication.ended) return;
		const ev = tag.type === FLV_TAG.VIDEO ? demux.video(tag.timestamp, tag.body, now) : tag.type === FLV_TAG.AUDIO ? demux.audio(tag.timestamp, tag.body, now) : null;
		if (!ev) return;
		if (ev.type === 'videoConfig') publication.setVideoConfig(ev.config);
		else if (ev.type === 'audioConfig') publication.setAudioConfig(ev.config);
		else if (ev.type === 'video') publication.pushVideo(ev.frame);
		else if (ev.type === 'audio') publication.pushAudio(ev.frame);
	});
	child.stdout.on('data', (chunk: Buffer) => {
		now = performance.now();
		reader.push(chunk);
	});
	return { publication, child };
}

function procCpuMs(pid: number): number | null {
	try {
		const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
		const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
		return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
	} catch {
		return null;
	}
}

function bridgePids(s: BridgeSession): number[] {
	const pids: number[] = [];
	const vt = s.videoTranscoder?.pids();
	if (vt?.decoder) pids.push(vt.decoder);
	if (vt) pids.push(...vt.encoders);
	if (s.opusTranscoder?.pid) pids.push(s.opusTranscoder.pid);
	return pids;
}

function pct(sorted: number[], p: number): number | null {
	if (sorted.length === 0) return null;
	return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? null;
}

function summary(values: number[]): { n: number; p50: number | null; p95: number | null; p99: number | null } {
	const s = [...values].sort((a, b) => a - b);
	const r = (v: number | null): number | null => (v === null ? null : Math.round(v * 100) / 100);
	return { n: s.length, p50: r(pct(s, 0.5)), p95: r(pct(s, 0.95)), p99: r(pct(s, 0.99)) };
}

const TWO_32 = 2 ** 32;
function signed32(d: number): number {
	const m = ((d % TWO_32) + TWO_32) % TWO_32;
	return m >= 2 ** 31 ? m - TWO_32 : m;
}

interface StreamProbe {
	videoDelays: number[];
	audioDelays: number[];
	videoPackets: number;
	audioPackets: number;
	close: () => void;
}

/** Consumers of both producers sending to UDP sockets here; delays matched by RTP timestamp. */
async function probeStream(routers: StreamRouters, session: BridgeSession, measuring: () => boolean): Promise<StreamProbe> {
	const name = session.stream.name;
	const { router } = await routers.viewerRouter(name);
	const pub = session.publication;
	const videoFrames = new Map<number, number>(); // RTP timestamp -> receivedAt
	const audioFrames: { pts: number; end: number; receivedAt: number }[] = [];
	pub.on('video', (f) => {
		const ts = session.rtpTimestampOf('video', f.pts);
		if (ts === null) return;
		videoFrames.set(ts, f.receivedAt);
		if (videoFrames.size > 600) videoFrames.delete(videoFrames.keys().next().value as number);
	});
	pub.on('audio', (f) => {
		const a = pub.audio;
		const dur = a && a.codec === 'aac' ? (a.samplesPerFrame * 1000) / a.sampleRate : 20;
		audioFrames.push({ pts: f.pts, end: f.pts + dur, receivedAt: f.receivedAt });
		if (audioFrames.length > 600) audioFrames.splice(0, 300);
	});
	const out: StreamProbe = { videoDelays: [], audioDelays: [], videoPackets: 0, audioPackets: 0, close: () => undefined };
	const closers: (() => void)[] = [];
	for (const producer of routers.producers(name)) {
		const socket = dgram.createSocket('udp4');
		await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
		socket.setRecvBufferSize(4 * 1024 * 1024);
		const transport = await router.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true, comedia: false });
		await transport.connect({ ip: '127.0.0.1', port: socket.address().port });
		await transport.consume({ producerId: producer.id, rtpCapabilities: { codecs: router.rtpCapabilities.codecs, headerExtensions: [] } });
		const seen = new Set<number>();
		const audioBase = session.rtpTimestampOf('audio', 0);
		socket.on('message', (msg) => {
			const at = performance.now();
			const pt = msg[1] ?? 0;
			if (pt >= 192 && pt <= 223) return;
			const h = parseRtpHeader(msg);
			if (producer.kind === 'video') {
				out.videoPackets++;
				if (seen.has(h.timestamp)) return;
				seen.add(h.timestamp);
				if (seen.size > 2000) seen.clear();
				const receivedAt = videoFrames.get(h.timestamp);
				if (receivedAt !== undefined && measuring()) out.videoDelays.push(at - receivedAt);
			} else {
				out.audioPackets++;
				if (audioBase === null) return;
				const start = signed32(h.timestamp - audioBase) / 48;
				const end = start + opusPacketSamples(msg.subarray(h.payloadOffset, h.payloadEnd)) / 48;
				const frame = audioFrames.find((f) => f.pts <= end - 0.01 && end - 0.01 < f.end);
				if (frame && measuring()) out.audioDelays.push(at - frame.receivedAt);
			}
		});
		closers.push(() => {
			transport.close();
			socket.close();
		});
	}
	out.close = () => closers.forEach((c) => c());
	return out;
}

interface Result {
	scenario: string;
	streams: number;
	videoPath: string | null;
	resolution: string;
	fps: number;
	videoDelayMs: ReturnType<typeof summary>;
	audioDelayMs: ReturnType<typeof summary>;
	bridgeInternalVideoMs: { p50: number | null; p99: number | null };
	cpu: {
		seconds: number;
		nodeMsPerSecond: number;
		ffmpegMsPerSecond: number;
		workerMsPerSecond: number;
		perStreamPercentOfCore: number;
		nodeUsPerVideoFrame: number;
		totalUsPerVideoFrame: number;
	};
	videoFramesSent: number;
	loadAverage: number[];
	/** The first stream's bridge counters at the end (drops, restarts, keyframes). */
	bridgeStats: ReturnType<BridgeSession['stats']>;
}

async function scenario(sc: Scenario, pool: WorkerPool, routers: StreamRouters, registry: StreamRegistry, bridge: Bridge): Promise<Result> {
	const file = await clip(sc.clip);
	const names = Array.from({ length: sc.streams }, (_, i) => `bench-${sc.clip}-${sc.streams}-${i}`);
	const pubs = names.map((n) => publish(registry, n, file));
	const deadline = Date.now() + 30_000;
	while (names.some((n) => routers.producers(n).length < 2)) {
		if (Date.now() > deadline) throw new Error('producers did not appear');
		await new Promise((r) => setTimeout(r, 50));
	}
	const sessions = names.map((n) => bridge.session(n) as BridgeSession);
	let measuring = false;
	const probes = await Promise.all(sessions.map((s) => probeStream(routers, s, () => measuring)));
	await new Promise((r) => setTimeout(r, WARMUP_SECONDS * 1000));

	const framesBefore = sessions.reduce((a, s) => a + s.stats().video.frames, 0);
	const pids = sessions.flatMap(bridgePids);
	const ffBefore = new Map(pids.map((p) => [p, procCpuMs(p) ?? 0]));
	const workerCpu = async (): Promise<number> =>
		(await pool.resourceUsage()).reduce((a, w) => a + w.usage.ru_utime + w.usage.ru_stime, 0);
	const wBefore = await workerCpu();
	const nodeBefore = process.cpuUsage();
	const t0 = performance.now();
	measuring = true;
	await new Promise((r) => setTimeout(r, MEASURE_SECONDS * 1000));
	measuring = false;
	const seconds = (performance.now() - t0) / 1000;
	const nodeUsage = process.cpuUsage(nodeBefore);
	const nodeMs = (nodeUsage.user + nodeUsage.system) / 1000;
	const wMs = (await workerCpu()) - wBefore;
	let ffMs = 0;
	for (const [pid, before] of ffBefore) ffMs += (procCpuMs(pid) ?? before) - before;
	const frames = sessions.reduce((a, s) => a + s.stats().video.frames, 0) - framesBefore;
	const internal = sessions[0]!.stats().addedDelayMs.video;

	const result: Result = {
		scenario: sc.name,
		streams: sc.streams,
		videoPath: sessions[0]!.videoPath,
		resolution: `${WIDTH}x${HEIGHT}`,
		fps: FPS,
		videoDelayMs: summary(probes.flatMap((p) => p.videoDelays)),
		audioDelayMs: summary(probes.flatMap((p) => p.audioDelays)),
		bridgeInternalVideoMs: { p50: internal.p50, p99: internal.p99 },
		cpu: {
			seconds: Math.round(seconds * 10) / 10,
			nodeMsPerSecond: Math.round(nodeMs / seconds),
			ffmpegMsPerSecond: Math.round(ffMs / seconds),
			workerMsPerSecond: Math.round(wMs / seconds),
			perStreamPercentOfCore: Math.round(((nodeMs + ffMs + wMs) / seconds / 10 / sc.streams) * 10) / 10,
			nodeUsPerVideoFrame: frames > 0 ? Math.round((nodeMs * 1000) / frames) : 0,
			totalUsPerVideoFrame: frames > 0 ? Math.round(((nodeMs + ffMs + wMs) * 1000) / frames) : 0,
		},
		videoFramesSent: frames,
		bridgeStats: sessions[0]!.stats(),
		loadAverage: os.loadavg().map((l) => Math.round(l * 100) / 100),
	};
	for (const p of probes) p.close();
	for (const p of pubs) p.publication.kick('bench scenario over');
	await new Promise((r) => setTimeout(r, 500));
	return result;
}

function fmt(v: number | null): string {
	return v === null ? '-' : v.toFixed(v < 10 ? 2 : 1);
}

async function main(): Promise<void> {
	const started = performance.now();
	const pool = await WorkerPool.create({
		numWorkers: 1,
		basePort: 0,
		listenIp: '127.0.0.1',
		announcedIp: '127.0.0.1',
		logLevel: 'warn',
		plainPortMin: 0,
		plainPortMax: 0,
		logger,
	});
	const routers = new StreamRouters(pool, logger);
	const registry = new StreamRegistry({ logger, maxStreams: 20 });
	const settings: BridgeSettings = {
		ffmpegPath: 'ffmpeg',
		rtpMtu: 1200,
		videoPolicy: 'auto',
		videoPolicyOverrides: {},
		transcode: { preset: 'veryfast', videoBitrateKbps: 0, keyframeIntervalMs: 1000 },
		opusBitrate: 96000,
		keyframeRequestMinIntervalMs: 500,
	};
	const bridge = await Bridge.create({ registry, routers, settings, logger });
	const results: Result[] = [];
	try {
		for (const sc of SCENARIOS) {
			console.log(`running: ${sc.name} (${sc.streams} x ${WIDTH}x${HEIGHT}p${FPS}, ${MEASURE_SECONDS} s)`);
			results.push(await scenario(sc, pool, routers, registry, bridge));
		}
	} finally {
		registry.close();
		await bridge.close();
		routers.close();
		pool.close();
		for (const c of children) c.kill('SIGKILL');
	}

	console.log(`\nBridge delay and cost, ${WIDTH}x${HEIGHT}p${FPS} H.264 + 48 kHz AAC, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
	console.log('Delay: frame received -> first RTP packet out of a mediasoup consumer (ms). Bridge-internal: to the bridge socket send, over the last 1024 frames of the session.\n');
	console.log('| scenario | streams | video path | video p50 | video p95 | video p99 | audio (Opus) p50 | audio p95 | audio p99 | bridge-internal video p50 / p99 (session, start-up included) |');
	console.log('|---|---|---|---|---|---|---|---|---|---|');
	for (const r of results) {
		const v = r.videoDelayMs;
		const a = r.audioDelayMs;
		console.log(
			`| ${r.scenario} | ${r.streams} | ${r.videoPath} | ${fmt(v.p50)} | ${fmt(v.p95)} | ${fmt(v.p99)} | ${fmt(a.p50)} | ${fmt(a.p95)} | ${fmt(a.p99)} | ${fmt(r.bridgeInternalVideoMs.p50)} / ${fmt(r.bridgeInternalVideoMs.p99)} |`,
		);
	}
	console.log('\nCost: CPU ms per second of wall time (1000 = one core), per stream as % of a core, and per video frame.\n');
	console.log('| scenario | streams | node ms/s | ffmpeg ms/s | worker ms/s | per stream % core | node µs/frame | total µs/frame | frames |');
	console.log('|---|---|---|---|---|---|---|---|---|');
	for (const r of results) {
		const c = r.cpu;
		console.log(
			`| ${r.scenario} | ${r.streams} | ${c.nodeMsPerSecond} | ${c.ffmpegMsPerSecond} | ${c.workerMsPerSecond} | ${c.perStreamPercentOfCore} | ${c.nodeUsPerVideoFrame} | ${c.totalUsPerVideoFrame} | ${r.videoFramesSent} |`,
		);
	}
	const pt = results.find((r) => r.scenario === 'passthrough');
	const tc = results.find((r) => r.scenario === 'transcode');
	const tn = results.find((r) => r.scenario === 'transcode, no B-frames');
	if (pt && tc) {
		console.log(`\nTranscoding costs ${(tc.cpu.perStreamPercentOfCore / Math.max(pt.cpu.perStreamPercentOfCore, 0.1)).toFixed(1)}x passthrough per stream; transcoded video p50 is ${fmt(tc.videoDelayMs.p50)} ms vs ${fmt(pt.videoDelayMs.p50)} ms.`);
	}
	if (tc && tn && tc.videoDelayMs.p50 !== null && tn.videoDelayMs.p50 !== null) {
		console.log(`B-frames (2, at ${FPS} fps) account for ${fmt(tc.videoDelayMs.p50 - tn.videoDelayMs.p50)} ms of the transcoded p50: the decoder's reorder wait (${fmt((2 * 1000) / FPS)} ms in theory).`);
	}
	console.log('Targets: passthrough video p50 < 5 ms, Opus audio p50 < 60 ms.');
	const outDir = path.join(path.dirname(new URL(import.meta.url).pathname), 'results');
	fs.mkdirSync(outDir, { recursive: true });
	const outFile = path.join(outDir, 'bridge-latency.json');
	fs.writeFileSync(
		outFile,
		`${JSON.stringify({ date: new Date().toISOString(), host: { cpus: os.cpus().length, model: os.cpus()[0]?.model }, settings, results }, null, 2)}\n`,
	);
	console.log(`\nwrote ${outFile} (${Math.round((performance.now() - started) / 1000)} s)`);
}

main().catch((err: unknown) => {
	console.error(err);
	for (const c of children) c.kill('SIGKILL');
	process.exit(1);
});
