/**
 * Plain RTP ingest benchmark: the CPU the ingest costs per sender and the
 * delay it adds, for 1 and for 10 concurrent 720p30 H.264 + Opus senders,
 * beside a bare UDP socket receiving the same packets (the floor any UDP
 * ingest in Node pays), and the depacketizer's own cost per packet.
 *
 *   node --import tsx bench/rtp-ingest.ts
 *
 * The ingest runs in this process (RtpIngest + StreamRegistry, nothing else),
 * so process.cpuUsage() is the ingest's CPU and excludes ffmpeg's. Senders
 * replay a pre-encoded 720p30 H.264 (1 s GOP) + Opus clip with
 * `ffmpeg -re -stream_loop -1 -c copy -f rtp`: encoding ten streams live would
 * saturate a 2-core machine and measure x264 instead of us.
 *
 * "Delay" starts when the datagram that completes a frame reaches JavaScript
 * (the frame's receivedAt) and ends when the Publication emits the frame:
 * parsing, reordering, depacketizing, timing and fan-out. Time a datagram
 * spent queued in the kernel or behind other event-loop work is not in it.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { RtpIngest } from '../ingest/rtp/index.js';
import { H264Depacketizer, ReorderBuffer, parseRtp } from '../ingest/rtp/index.js';
import type { RtpAnswer } from '../ingest/rtp/index.js';
import { defaultConfig } from '../server/config/load.js';
import { splitAnnexB } from '../server/core/codecs/h264.js';
import { StreamRegistry } from '../server/core/stream.js';
import { ChildSet } from '../test/helpers/children.js';

const WIDTH = 1280;
const HEIGHT = 720;
const FPS = 30;
const CLIP_SECONDS = 10;
const SCENARIOS = [
	{ senders: 1, measureSeconds: 12 },
	{ senders: 10, measureSeconds: 15 },
];
const WARMUP_SECONDS = 3;
const FLOOR_SECONDS = 8;
const MTU = 1200;

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

/** The 720p30 H.264 (Annex B, parameter sets before every IDR) and Opus clips, encoded once. */
async function clips(): Promise<{ video: string; audio: string }> {
	const dir = path.join(os.tmpdir(), 'subsecond-bench');
	fs.mkdirSync(dir, { recursive: true });
	const video = path.join(dir, `rtp-${WIDTH}x${HEIGHT}p${FPS}-${CLIP_SECONDS}s-aud.h264`);
	const audio = path.join(dir, `rtp-opus-${CLIP_SECONDS}s.ogg`);
	if (!fs.existsSync(video)) {
		console.log(`encoding the ${WIDTH}x${HEIGHT}p${FPS} test clip once: ${video}`);
		await run([
			'-hide_banner', '-loglevel', 'error', '-nostdin', '-f', 'lavfi', '-i', `testsrc2=size=${WIDTH}x${HEIGHT}:rate=${FPS}`,
			'-t', String(CLIP_SECONDS), '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'baseline',
			'-pix_fmt', 'yuv420p', '-g', String(FPS), '-keyint_min', String(FPS), '-sc_threshold', '0', '-b:v', '2500k', '-maxrate', '2500k',
			'-bufsize', '2500k', '-x264-params', 'aud=1', '-f', 'h264', `${video}.part`,
		]);
		fs.renameSync(`${video}.part`, video);
	}
	if (!fs.existsSync(audio)) {
		await run([
			'-hide_banner', '-loglevel', 'error', '-nostdin', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
			'-t', String(CLIP_SECONDS), '-c:a', 'libopus', '-b:a', '96k', '-ac', '2', '-frame_duration', '20', '-f', 'ogg', `${audio}.part`,
		]);
		fs.renameSync(`${audio}.part`, audio);
	}
	return { video, audio };
}

function send(c: { video: string; audio: string }, to: { video: number; audio: number; videoSsrc?: number; audioSsrc?: number }): ChildProcess {
	const args = [
		'-hide_banner', '-loglevel', 'error', '-nostdin',
		'-re', '-stream_loop', '-1', '-framerate', String(FPS), '-f', 'h264', '-i', c.video,
		'-re', '-stream_loop', '-1', '-i', c.audio,
		'-map', '0:v', '-c', 'copy', '-f', 'rtp', '-payload_type', '96', ...(to.videoSsrc ? ['-ssrc', String(to.videoSsrc)] : []),
		`rtp://127.0.0.1:${to.video}?pkt_size=${MTU}`,
		'-map', '1:a', '-c', 'copy', '-f', 'rtp', '-payload_type', '111', ...(to.audioSsrc ? ['-ssrc', String(to.audioSsrc)] : []),
		`rtp://127.0.0.1:${to.audio}?pkt_size=${MTU}`,
	];
	const child = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'ignore'] });
	return children.add(child);
}

function percentile(sorted: number[], p: number): number {
	if (sorted.length === 0) return NaN;
	return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Row {
	senders: number;
	seconds: number;
	cpuMs: number;
	cpuPercentPerSender: number;
	packets: number;
	usPerPacket: number;
	videoFrames: number;
	audioFrames: number;
	lost: number;
	framesDropped: number;
	videoDelay: { p50: number; p95: number; p99: number; max: number };
	audioDelay: { p50: number; p95: number; p99: number; max: number };
	floorCpuMs: number;
	floorPackets: number;
	floorUsPerPacket: number;
}

async function scenario(c: { video: string; audio: string }, senders: number, measureSeconds: number): Promise<Omit<Row, 'floorCpuMs' | 'floorPackets' | 'floorUsPerPacket'>> {
	const config = { ...defaultConfig().rtpIngest, listenIp: '127.0.0.1', idleTimeoutMs: 60_000 };
	const registry = new StreamRegistry({ logger, maxStreams: 100 });
	const ingest = await RtpIngest.create({ config, registry, announcedIp: '127.0.0.1', keyframeRequestMinIntervalMs: 500, logger });
	const videoDelays: number[] = [];
	const audioDelays: number[] = [];
	let measuring = false;
	let videoFrames = 0;
	let audioFrames = 0;
	const answers: RtpAnswer[] = [];
	for (let i = 0; i < senders; i++) {
		const session = await ingest.publish({ stream: `bench${i}`, key: null, remoteAddress: '127.0.0.1' });
		session.publication.on('video', (f) => {
			if (!measuring) return;
			videoFrames++;
			videoDelays.push(performance.now() - f.receivedAt);
		});
		session.publication.on('audio', (f) => {
			if (!measuring) return;
			audioFrames++;
			audioDelays.push(performance.now() - f.receivedAt);
		});
		answers.push(session.answer);
	}
	for (const a of answers) send(c, { video: a.video.port, audio: a.audio.port, videoSsrc: a.video.ssrc, audioSsrc: a.audio.ssrc });
	await sleep(WARMUP_SECONDS * 1000);
	const packetsOf = (): number => ingest.totals().packets;
	const lostOf = (): number => ingest.totals().lost.video + ingest.totals().lost.audio;
	const droppedOf = (): number => ingest.totals().framesDropped;
	const p0 = packetsOf();
	const l0 = lostOf();
	const d0 = droppedOf();
	const cpu0 = process.cpuUsage();
	const t0 = performance.now();
	measuring = true;
	await sleep(measureSeconds * 1000);
	measuring = false;
	const cpu = process.cpuUsage(cpu0);
	const seconds = (performance.now() - t0) / 1000;
	const packets = packetsOf() - p0;
	const row = {
		senders,
		seconds,
		cpuMs: (cpu.user + cpu.system) / 1000,
		cpuPercentPerSender: ((cpu.user + cpu.system) / 1000 / (seconds * 1000) / senders) * 100,
		packets,
		usPerPacket: (cpu.user + cpu.system) / Math.max(1, packets),
		videoFrames,
		audioFrames,
		lost: lostOf() - l0,
		framesDropped: droppedOf() - d0,
		videoDelay: stats(videoDelays),
		audioDelay: stats(audioDelays),
	};
	await children.killAll();
	ingest.close();
	registry.close();
	return row;
}

function stats(xs: number[]): { p50: number; p95: number; p99: number; max: number } {
	const s = [...xs].sort((a, b) => a - b);
	return { p50: percentile(s, 50), p95: percentile(s, 95), p99: percentile(s, 99), max: s.at(-1) ?? NaN };
}

/** The same senders into bare UDP sockets that only count: what receiving alone costs. */
async function udpFloor(c: { video: string; audio: string }, senders: number): Promise<{ cpuMs: number; packets: number }> {
	const sockets: dgram.Socket[] = [];
	let packets = 0;
	const bind = async (): Promise<number> => {
		const s = dgram.createSocket('udp4');
		s.on('message', () => packets++);
		await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
		sockets.push(s);
		return s.address().port;
	};
	for (let i = 0; i < senders; i++) send(c, { video: await bind(), audio: await bind() });
	await sleep(WARMUP_SECONDS * 1000);
	const p0 = packets;
	const cpu0 = process.cpuUsage();
	await sleep(FLOOR_SECONDS * 1000);
	const cpu = process.cpuUsage(cpu0);
	const counted = packets - p0;
	await children.killAll();
	for (const s of sockets) s.close();
	return { cpuMs: ((cpu.user + cpu.system) / 1000) * (1 / FLOOR_SECONDS), packets: counted / FLOOR_SECONDS };
}

/** The depacketizer path alone (parse, reorder, depacketize) over the clip's packets, in a loop. */
function microbench(videoFile: string): { packets: number; nsPerPacket: number; nsPerPacketReordered: number; mbitPerSecondOfCpu: number } {
	const nalus = splitAnnexB(fs.readFileSync(videoFile));
	const packets: Buffer[] = [];
	let seq = 0;
	let ts = 0;
	let au: Buffer[] = [];
	const flush = (): void => {
		const payloads: Buffer[] = [];
		for (const n of au) {
			if (n.length <= MTU) {
				payloads.push(n);
				continue;
			}
			const body = n.subarray(1);
			for (let off = 0; off < body.length; off += MTU - 2) {
				const fu = Buffer.from([((n[0] ?? 0) & 0xe0) | 28, (off === 0 ? 0x80 : 0) | (off + MTU - 2 >= body.length ? 0x40 : 0) | ((n[0] ?? 0) & 0x1f)]);
				payloads.push(Buffer.concat([fu, body.subarray(off, off + MTU - 2)]));
			}
		}
		payloads.forEach((p, i) => {
			const h = Buffer.alloc(12);
			h[0] = 0x80;
			h[1] = (i === payloads.length - 1 ? 0x80 : 0) | 96;
			h.writeUInt16BE(seq++ & 0xffff, 2);
			h.writeUInt32BE(ts >>> 0, 4);
			h.writeUInt32BE(1234, 8);
			packets.push(Buffer.concat([h, p]));
		});
		ts += 3000;
		au = [];
	};
	for (const n of nalus) {
		// The clip has access unit delimiters (x264 aud=1): each starts a picture.
		if (((n[0] ?? 0) & 0x1f) === 9 && au.length > 0) flush();
		au.push(n);
	}
	if (au.length > 0) flush();
	const bytes = packets.reduce((s, p) => s + p.length, 0);

	const runOnce = (order: number[]): number => {
		let frames = 0;
		const d = new H264Depacketizer({ frame: () => frames++, config: () => undefined, needKeyframe: () => undefined, problem: () => undefined }, { maxFrameSize: 8 << 20 });
		const r = new ReorderBuffer<Buffer>(
			{
				deliver: (payloadPacket) => {
					const p = parseRtp(payloadPacket);
					if (p.ok) d.push(p.value.payload, p.value.timestamp, p.value.marker, 0);
				},
				loss: () => d.loss(),
				resync: () => d.reset(),
			},
			{ windowMs: 10, maxPackets: 32, setTimer: () => null, clearTimer: () => undefined },
		);
		for (const i of order) {
			const pkt = packets[i]!;
			const parsed = parseRtp(pkt);
			if (parsed.ok) r.push(parsed.value.sequenceNumber, pkt);
		}
		return frames;
	};
	const inOrder = packets.map((_, i) => i);
	const reordered = [...inOrder];
	for (let i = 0; i + 1 < reordered.length; i += 50) [reordered[i], reordered[i + 1]] = [reordered[i + 1]!, reordered[i]!];
	// Warm both paths up first, then take the best of several rounds: on a
	// shared machine the minimum is the figure least disturbed by others.
	for (let k = 0; k < 5; k++) {
		runOnce(inOrder);
		runOnce(reordered);
	}
	const time = (order: number[]): number => {
		let best = Infinity;
		for (let k = 0; k < 10; k++) {
			const t = performance.now();
			runOnce(order);
			best = Math.min(best, performance.now() - t);
		}
		return (best * 1e6) / packets.length;
	};
	const ns = time(inOrder);
	const nsReordered = time(reordered);
	return { packets: packets.length, nsPerPacket: ns, nsPerPacketReordered: nsReordered, mbitPerSecondOfCpu: ((bytes * 8) / (ns * packets.length)) * 1e3 };
}

function fmt(n: number, digits = 1): string {
	return Number.isFinite(n) ? n.toFixed(digits) : '-';
}

async function main(): Promise<void> {
	const c = await clips();
	console.log(
		`RTP ingest benchmark: ${WIDTH}x${HEIGHT}p${FPS} H.264 (2.5 Mbit/s) + Opus (96 kbit/s), ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
	);
	const micro = microbench(c.video);
	const rows: Row[] = [];
	for (const s of SCENARIOS) {
		console.log(`measuring ${s.senders} sender(s) for ${s.measureSeconds} s, then bare UDP sockets for ${FLOOR_SECONDS} s...`);
		const r = await scenario(c, s.senders, s.measureSeconds);
		const floor = await udpFloor(c, s.senders);
		rows.push({ ...r, floorCpuMs: floor.cpuMs, floorPackets: floor.packets, floorUsPerPacket: (floor.cpuMs * 1000) / Math.max(1, floor.packets) });
	}
	console.log('');
	console.log('| senders | packets/s | CPU % per sender | µs CPU per packet | bare UDP µs/packet | ingest / bare UDP | video delay p50 / p95 / p99 / max (ms) | audio delay p50 / p95 / p99 (ms) | lost | frames dropped |');
	console.log('|---|---|---|---|---|---|---|---|---|---|');
	for (const r of rows) {
		console.log(
			`| ${r.senders} | ${fmt(r.packets / r.seconds, 0)} | ${fmt(r.cpuPercentPerSender, 2)} | ${fmt(r.usPerPacket, 1)} | ${fmt(r.floorUsPerPacket, 1)} | ${fmt(r.usPerPacket / r.floorUsPerPacket, 2)}x | ` +
				`${fmt(r.videoDelay.p50, 3)} / ${fmt(r.videoDelay.p95, 3)} / ${fmt(r.videoDelay.p99, 3)} / ${fmt(r.videoDelay.max, 2)} | ${fmt(r.audioDelay.p50, 3)} / ${fmt(r.audioDelay.p95, 3)} / ${fmt(r.audioDelay.p99, 3)} | ${r.lost} | ${r.framesDropped} |`,
		);
	}
	console.log('');
	console.log(
		`Depacketizer alone (parse + reorder + FU-A/STAP-A reassembly, ${micro.packets} packets of the clip): ${fmt(micro.nsPerPacket, 0)} ns/packet in order, ` +
			`${fmt(micro.nsPerPacketReordered, 0)} ns/packet with every 50th pair swapped; one core depacketizes ${fmt(micro.mbitPerSecondOfCpu / 1000, 1)} Gbit/s of H.264.`,
	);
	const out = path.join(import.meta.dirname, 'results', 'rtp-ingest.json');
	fs.mkdirSync(path.dirname(out), { recursive: true });
	fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), cpus: os.cpus().length, loadavg: os.loadavg(), rows, micro }, null, 2));
	console.log(`\nwritten to ${path.relative(process.cwd(), out)}`);
}

main()
	.catch((err: unknown) => {
		console.error(err);
		process.exitCode = 1;
	})
	.finally(() => void children.killAll());
