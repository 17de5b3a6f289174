/**
 * Glass-to-glass latency and time to first frame, measured with the probe:
 * frames carry their capture time in their pixels (bench/probe/timecode.ts),
 * the audio carries tone bursts at known capture instants
 * (bench/probe/audio-marks.ts), and viewers read both back from what they
 * present and play. Only this machine's clock is trusted: publisher and
 * viewers run here.
 *
 *   node --import tsx bench/latency.ts [--seconds 30] [--sessions 3] [--joins 6] [--skip-hls]
 *
 * One capture-clock publisher (bench/probe/publisher.ts: one clock stamps
 * both tracks, as OBS and libavformat apps do) feeds every path at once, so
 * the rows of one run compare like with like on this noisy machine:
 *  - RTMP (H.264 + AAC) into subsecond, watched on the product's own page
 *    /watch/NAME in Chromium as shipped (muted autoplay, audio consumed, lip
 *    sync on), and with the viewer library taking only the video;
 *  - plain RTP (the same H.264 + Opus from the same PCM) into our RTP ingest,
 *    into a bare mediasoup PlainTransport of the same server (the floor: no
 *    ingest, no bridge) and into Janus 1.1.2's streaming plugin (the peer);
 *  - the RTMP stream in the werift Node viewer.
 * Then time to first frame for a 1 s and a 4 s GOP, and HLS beside
 * nginx-rtmp (bench/hls-latency.ts, in a child).
 * Writes bench/results/latency.json, latency.md and latency.png.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { loadConfig } from '../server/config/load.js';
import { Server } from '../server/server.js';
import { JanusAnchor } from './anchors/janus.js';
import { avOffsets } from './probe/audio-marks.js';
import type { AudioSample } from './probe/audio-marks.js';
import { bundle, launchChromium, servePage } from './probe/chromium.js';
import type { Browser, Page } from './probe/chromium.js';
import { NodeProbeViewer } from './probe/node-viewer.js';
import { PROBE_DEFAULTS, ProbePublisher } from './probe/publisher.js';
import type { RtpOutput } from './probe/publisher.js';
import { framesLost, round, summarize } from './probe/stats.js';
import type { Summary } from './probe/stats.js';
import type { FrameSample, ProbeResults, RtcCounters } from './probe/types.js';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
	const i = args.indexOf(`--${name}`);
	return i >= 0 ? Number(args[i + 1]) : dflt;
};
const SECONDS = arg('seconds', 30);
/**
 * Each browser figure pools this many viewer sessions of SECONDS / SESSIONS
 * each: a browser settles its jitter buffers per session, differently from
 * one session to the next on a busy machine, and one session is one draw.
 */
const SESSIONS = Math.max(1, Math.round(arg('sessions', 3)));
const WARMUP_S = 4;
const JOINS = arg('joins', 6);
const SKIP_HLS = args.includes('--skip-hls');
const RESULTS = path.join(import.meta.dirname, 'results');

export type Ingest = 'rtmp' | 'rtp' | 'janus' | 'bare';

export interface LatencyRow {
	name: string;
	ingest: Ingest;
	viewer: 'chromium' | 'node';
	/** Which page: the product's /watch/NAME, the viewer library on a bare page, or Janus's. */
	page: 'product' | 'library' | 'janus' | null;
	audio: boolean;
	/** Video, capture -> presented, pooled over the row's viewer sessions. */
	g2g: Summary;
	/** Audio, capture -> played out (browser) or received (Node viewer). */
	audioG2g: Summary | null;
	/** Audio delay minus the delay of the picture captured with it: positive, audio after the picture. */
	avOffset: Summary | null;
	/** p95 of |A/V offset|: the lip-sync error most bursts stay within. */
	avAbsP95: number | null;
	/** Each viewer session's own video p50: how much sessions differ. */
	sessionP50s: number[];
	/** Capture -> last packet received (browser only): encode, ingest, server, network. */
	receive: Summary | null;
	framesShown: number;
	lost: number;
	lostOf: number;
	unreadable: number;
	/** Median over the sessions. */
	ttffMs: number | null;
	/** The browser's own receive-side delays over the measured windows (ms per frame or sample), mean of the sessions. */
	receiver: ReceiverDelays | null;
}

/** Where a browser viewer's milliseconds go after the packets arrive, from getStats(). */
export interface ReceiverDelays {
	videoJitterBufferMs: number | null;
	/** Mean time Chromium's (software) decoder took per frame. */
	videoDecodeMs: number | null;
	audioJitterBufferMs: number | null;
	/** NetEq's target: what it aims to hold given the jitter it sees. */
	audioJitterTargetMs: number | null;
	/** NetEq's minimum: the floor lip sync or jitterBufferTarget sets under the target. */
	audioJitterMinimumMs: number | null;
	/** Shares of received audio samples NetEq stretched (inserted), squeezed (removed) or made up (concealed), %. */
	audioInsertedPct: number | null;
	audioRemovedPct: number | null;
	audioConcealedPct: number | null;
	/** Audio in the output device's buffer (media-playout stats), when reported. */
	audioPlayoutMs: number | null;
}

/** The page globals of bench/probe/browser/globals.ts, seen from Node. */
interface ProbeWindow {
	probe?: {
		results: ProbeResults | null;
		joinedAt: number;
		error: string | null;
		timeline?: Record<string, number>;
		audio?: { samples: AudioSample[]; outputLatencyMs: number | null; error: string | null } | null;
	};
	startOurs?: (server: string, stream: string) => Promise<void>;
	startJanus?: (url: string, mountpoint: number) => Promise<void>;
	probeRtcCounters?: () => Promise<RtcCounters>;
}

interface ProbeRead {
	results: ProbeResults | null;
	joinedAt: number;
	error: string | null;
	timeline?: Record<string, number>;
	audio: AudioSample[] | null;
}

interface PageRun {
	page: Page;
	read(): Promise<ProbeRead>;
}

function rtcCounters(page: Page): Promise<RtcCounters | null> {
	return page.evaluate(async () => (await (globalThis as unknown as ProbeWindow).probeRtcCounters?.()) ?? null);
}

function receiverDelays(a: RtcCounters | null, b: RtcCounters | null): ReceiverDelays | null {
	if (!a || !b) return null;
	const per = (d: number, n: number): number | null => (n > 0 ? (d / n) * 1000 : null);
	const pct = (d: number, n: number): number | null => (n > 0 ? (d / n) * 100 : null);
	const dv = b.video.jitterBufferEmittedCount - a.video.jitterBufferEmittedCount;
	const da = b.audio.jitterBufferEmittedCount - a.audio.jitterBufferEmittedCount;
	const received = b.audio.totalSamplesReceived - a.audio.totalSamplesReceived;
	return {
		videoJitterBufferMs: per(b.video.jitterBufferDelay - a.video.jitterBufferDelay, dv),
		videoDecodeMs: per(b.video.totalDecodeTime - a.video.totalDecodeTime, b.video.framesDecoded - a.video.framesDecoded),
		audioJitterBufferMs: per(b.audio.jitterBufferDelay - a.audio.jitterBufferDelay, da),
		audioJitterTargetMs: per(b.audio.jitterBufferTargetDelay - a.audio.jitterBufferTargetDelay, da),
		audioJitterMinimumMs: per(b.audio.jitterBufferMinimumDelay - a.audio.jitterBufferMinimumDelay, da),
		audioInsertedPct: pct(b.audio.insertedSamplesForDeceleration - a.audio.insertedSamplesForDeceleration, received),
		audioRemovedPct: pct(b.audio.removedSamplesForAcceleration - a.audio.removedSamplesForAcceleration, received),
		audioConcealedPct: pct(b.audio.concealedSamples - a.audio.concealedSamples, received),
		audioPlayoutMs: per(b.playoutDelay - a.playoutDelay, b.playoutSamples - a.playoutSamples),
	};
}

interface Session {
	read: ProbeRead;
	since: number;
	receiver: ReceiverDelays | null;
}

/**
 * Opens SESSIONS viewers in turn; each warms up, is measured for its share
 * of SECONDS, and is closed before the next opens.
 */
async function measureSessions(open: () => Promise<PageRun>): Promise<Session[]> {
	const out: Session[] = [];
	for (let i = 0; i < SESSIONS; i++) {
		const run = await open();
		await sleep(WARMUP_S * 1000);
		const before = await rtcCounters(run.page);
		const since = wallNow();
		await sleep((SECONDS / SESSIONS) * 1000);
		const read = await run.read();
		const receiver = receiverDelays(before, await rtcCounters(run.page));
		await run.page.close();
		out.push({ read, since, receiver });
	}
	return out;
}

const wallNow = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function log(msg: string): void {
	console.error(`[latency] ${msg}`);
}

async function startServer(): Promise<{ server: Server; url: string; hlsDir: string }> {
	const hlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-bench-hls-'));
	const config = loadConfig({
		env: {},
		file: null,
		overrides: {
			http: { host: '127.0.0.1', port: 0 },
			rtmp: { host: '127.0.0.1', port: 0 },
			rtc: { port: 0, listenIp: '127.0.0.1', announcedIp: '127.0.0.1' },
			hls: { dir: hlsDir },
			log: { level: 'silent' },
		},
	});
	const server = await Server.create(config, { logger: pino({ level: 'silent' }) });
	return { server, url: `http://127.0.0.1:${server.http.port}`, hlsDir };
}

async function waitLive(url: string, stream: string, timeoutMs = 20_000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	while (Date.now() < deadline) {
		const res = await fetch(`${url}/api/streams/${stream}`).catch(() => null);
		if (res?.ok) {
			const info = (await res.json()) as { video: unknown; webrtc?: { ready?: boolean } };
			if (info.video && info.webrtc?.ready !== false) return;
		}
		await sleep(100);
	}
	throw new Error(`stream ${stream} did not go live`);
}

/** The viewer library's options the probe page passes on (see ours-page.ts). */
interface ViewerOptions {
	audio?: boolean;
	jitterBufferTargetMs?: number;
}

/** Scripts a probe page needs before its own run: the bundled AudioWorklet. */
interface ProbeScripts {
	worklet: string;
	product: string;
}

async function newPage(browser: Browser, scripts: ProbeScripts): Promise<Page> {
	const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
	await page.addInitScript({ content: `window.probeWorkletSource = ${JSON.stringify(scripts.worklet)};` });
	return page;
}

async function openOurs(browser: Browser, scripts: ProbeScripts, pageUrl: string, server: string, stream: string, opts: ViewerOptions = {}): Promise<PageRun> {
	const page = await newPage(browser, scripts);
	await page.goto(pageUrl);
	await page.evaluate(
		([s, n, o]) => {
			(globalThis as unknown as { probeOptions?: ViewerOptions }).probeOptions = o;
			void (globalThis as unknown as ProbeWindow).startOurs?.(s, n);
		},
		[server, stream, opts] as const,
	);
	return { page, read: () => readProbe(page) };
}

/** The product's own player page, as a viewer opens it; the probe listens beside it. */
export async function openProduct(browser: Browser, scripts: ProbeScripts, server: string, stream: string): Promise<PageRun> {
	const page = await newPage(browser, scripts);
	await page.addInitScript({ content: scripts.product });
	await page.goto(`${server}/watch/${encodeURIComponent(stream)}`);
	return { page, read: () => readProbe(page) };
}

async function openJanus(browser: Browser, scripts: ProbeScripts, pageUrl: string, janus: JanusAnchor): Promise<PageRun> {
	const page = await newPage(browser, scripts);
	await page.goto(pageUrl);
	await page.evaluate(([u, id]) => void (globalThis as unknown as ProbeWindow).startJanus?.(u, id), [janus.httpUrl, janus.mountpointId] as const);
	return { page, read: () => readProbe(page) };
}

function readProbe(page: Page): Promise<ProbeRead> {
	return page.evaluate(() => {
		const p = (globalThis as unknown as ProbeWindow).probe;
		const a = p?.audio;
		return {
			results: p?.results ?? null,
			joinedAt: p?.joinedAt ?? 0,
			error: p?.error ?? a?.error ?? null,
			audio: a ? [...a.samples] : null,
			...(p?.timeline ? { timeline: { ...p.timeline } } : {}),
		};
	});
}

function row(
	name: string,
	ingest: Ingest,
	viewer: LatencyRow['viewer'],
	page: LatencyRow['page'],
	audio: boolean,
	sessions: readonly Session[],
	sent: readonly number[],
): LatencyRow {
	const pooled: FrameSample[] = [];
	const heard: AudioSample[] = [];
	const offsets: number[] = [];
	const sessionP50s: number[] = [];
	const ttffs: number[] = [];
	let lost = 0;
	let lostOf = 0;
	let unreadable = 0;
	for (const { read: r, since } of sessions) {
		if (r.error) throw new Error(`${name}: ${r.error}`);
		const samples = (r.results?.samples ?? []).filter((s) => s.presentedAt >= since);
		const l = framesLost(sent, samples.map((s) => s.seq));
		lost += l.lost;
		lostOf += l.of;
		unreadable += r.results?.unreadable ?? 0;
		pooled.push(...samples);
		sessionP50s.push(summarize(samples.map((s) => s.delayMs)).p50);
		if (r.results?.firstFrameAt) ttffs.push(r.results.firstFrameAt - r.joinedAt);
		if (audio && r.audio) {
			const a = r.audio.filter((x) => x.markMs + x.delayMs >= since);
			heard.push(...a);
			offsets.push(...avOffsets(a, samples.map((s) => ({ captureMs: s.presentedAt - s.delayMs, delayMs: s.delayMs }))));
		}
	}
	const receive = pooled.map((s) => s.receiveDelayMs).filter((v): v is number => v !== null);
	return {
		name,
		ingest,
		viewer,
		page,
		audio,
		g2g: summarize(pooled.map((s) => s.delayMs)),
		audioG2g: heard.length ? summarize(heard.map((a) => a.delayMs)) : null,
		avOffset: offsets.length ? summarize(offsets) : null,
		avAbsP95: offsets.length ? summarize(offsets.map((o) => Math.abs(o))).p95 : null,
		sessionP50s,
		receive: receive.length ? summarize(receive) : null,
		framesShown: pooled.length,
		lost,
		lostOf,
		unreadable,
		ttffMs: ttffs.length ? summarize(ttffs).p50 : null,
		receiver: meanDelays(sessions.map((x) => x.receiver)),
	};
}

/** Field by field mean of the sessions' receiver delays, skipping the unknown. */
function meanDelays(all: readonly (ReceiverDelays | null)[]): ReceiverDelays | null {
	const known = all.filter((d): d is ReceiverDelays => d !== null);
	const first = known[0];
	if (!first) return null;
	const out = { ...first };
	for (const k of Object.keys(first) as (keyof ReceiverDelays)[]) {
		const v = known.map((d) => d[k]).filter((x): x is number => x !== null);
		out[k] = v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
	}
	return out;
}

/** A bare mediasoup forward: the RTP produced straight onto a PlainTransport of the server. */
async function bareProducer(server: Server, stream: string): Promise<{ videoPort: number; audioPort: number; close: () => void }> {
	const origin = await server.routers.origin(stream);
	const vt = await origin.router.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true, comedia: true });
	const at = await origin.router.createPlainTransport({ listenIp: '127.0.0.1', rtcpMux: true, comedia: true });
	const rtcp = { cname: 'subsecond-probe', reducedSize: true, mux: true };
	const video = await vt.produce({
		kind: 'video',
		rtpParameters: {
			codecs: [
				{
					mimeType: 'video/H264',
					payloadType: 96,
					clockRate: 90000,
					parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 },
					rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }],
				},
			],
			encodings: [{ ssrc: 3001 }],
			rtcp,
		},
	});
	const audio = await at.produce({
		kind: 'audio',
		rtpParameters: {
			codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }],
			encodings: [{ ssrc: 3002 }],
			rtcp,
		},
	});
	// The stream has to be live in the core for viewers to be told so.
	const pub = server.registry.publish(stream, { protocol: 'rtp', remoteAddress: '127.0.0.1', kick: () => undefined });
	await server.routers.setProducers(stream, [video, audio]);
	return {
		videoPort: vt.tuple.localPort,
		audioPort: at.tuple.localPort,
		close: () => {
			pub.end('bench done');
			vt.close();
			at.close();
		},
	};
}

/**
 * Every path from one capture: RTMP into our server, and one RTP encode into
 * our RTP ingest, a bare mediasoup forward (the floor) and Janus (the peer).
 * Viewers watch one path at a time: two 720p30 decodes at once overload a
 * 2-core machine's Chromium, and the figures would measure that instead.
 */
async function feedRuns(browser: Browser, scripts: ProbeScripts, oursPage: string, janusPage: string): Promise<LatencyRow[]> {
	const { server, url, hlsDir } = await startServer();
	const janus = JanusAnchor.available() ? await JanusAnchor.create() : null;
	const rtmpStream = 'probe-rtmp';
	const rtpStream = 'probe-rtp';
	const bareStream = 'probe-bare';
	const answer = (await (await fetch(`${url}/api/streams/${rtpStream}/rtp`, { method: 'POST' })).json()) as {
		video: { ip: string; port: number; payloadType: number; ssrc: number };
		audio: { ip: string; port: number; payloadType: number; ssrc: number };
	};
	const bare = await bareProducer(server, bareStream);
	const outputs: RtpOutput[] = [
		{ video: answer.video, audio: answer.audio, senderReports: true },
		{ video: { ip: '127.0.0.1', port: bare.videoPort, payloadType: 96, ssrc: 3001 }, audio: { ip: '127.0.0.1', port: bare.audioPort, payloadType: 111, ssrc: 3002 }, senderReports: true },
	];
	if (janus) {
		outputs.push({
			video: { ip: '127.0.0.1', port: janus.videoPort, payloadType: 96, ssrc: 4001 },
			audio: { ip: '127.0.0.1', port: janus.audioPort, payloadType: 111, ssrc: 4002 },
		});
	}
	const pub = await ProbePublisher.create({
		targets: [
			{ kind: 'rtmp', url: `rtmp://127.0.0.1:${server.rtmp!.port}/live/${rtmpStream}` },
			{ kind: 'rtp', outputs },
		],
	});
	const rows: LatencyRow[] = [];
	try {
		await waitLive(url, rtmpStream);
		await waitLive(url, rtpStream);
		type Plan = [string, Ingest, LatencyRow['page'], boolean, () => Promise<PageRun>];
		const plan: Plan[] = [
			['subsecond, RTMP ingest (AAC → Opus)', 'rtmp', 'product', true, () => openProduct(browser, scripts, url, rtmpStream)],
			['subsecond, RTMP ingest (AAC → Opus)', 'rtmp', 'library', false, () => openOurs(browser, scripts, oursPage, url, rtmpStream, { audio: false })],
			['subsecond, plain RTP ingest (Opus)', 'rtp', 'product', true, () => openProduct(browser, scripts, url, rtpStream)],
			['bare mediasoup forward (floor)', 'bare', 'product', true, () => openProduct(browser, scripts, url, bareStream)],
			['bare mediasoup forward (floor)', 'bare', 'library', false, () => openOurs(browser, scripts, oursPage, url, bareStream, { audio: false })],
		];
		if (janus) plan.push(['Janus 1.1.2 streaming plugin (peer)', 'janus', 'janus', true, () => openJanus(browser, scripts, janusPage, janus)]);
		// --only-product: the product-page rows alone; --only-node: the Node viewer rows alone.
		const onlyNode = args.includes('--only-node');
		const only = onlyNode ? [] : args.includes('--only-product') ? plan.filter((p) => p[2] === 'product') : plan;
		for (const [name, ingest, page, audio, open] of only) {
			log(`${name} -> Chromium (${page} page${audio ? '' : ', video only'}), ${SECONDS} s`);
			const m = await measureSessions(open);
			rows.push(row(name, ingest, 'chromium', page, audio, m, pub.sentSeqs));
			if (pub.error) throw pub.error;
		}

		if (!args.includes('--only-product')) {
			// The Node viewer presents nothing: its figures are arrival (audio) and decode (video) times, no jitter buffer, no lip sync.
			const nodeRows: [string, Ingest, string][] = [
				['subsecond, RTMP ingest (AAC → Opus)', 'rtmp', rtmpStream],
				['bare mediasoup forward (floor)', 'bare', bareStream],
			];
			if (onlyNode) nodeRows.splice(1, 0, ['subsecond, plain RTP ingest (Opus)', 'rtp', rtpStream]);
			for (const [name, ingest, stream] of nodeRows) {
				log(`${name} -> Node viewer (werift + ffmpeg), ${Math.round(SECONDS / 2)} s`);
				const node = await NodeProbeViewer.create({ server: url, stream, width: PROBE_DEFAULTS.width, height: PROBE_DEFAULTS.height });
				await sleep(WARMUP_S * 1000);
				const nodeSince = wallNow();
				await sleep((SECONDS / 2) * 1000);
				const nodeRead: ProbeRead = { results: node.results, joinedAt: node.joinedAt, error: null, audio: node.audio };
				rows.push(row(name, ingest, 'node', null, true, [{ read: nodeRead, since: nodeSince, receiver: null }], pub.sentSeqs));
				await node.close();
			}
		}
	} finally {
		await pub.close();
		bare.close();
		await janus?.close();
		await server.close();
		fs.rmSync(hlsDir, { recursive: true, force: true });
	}
	return rows;
}

export interface TtffResult {
	gopSeconds: number;
	joins: number[];
	summary: Summary;
	/** Median of each milestone across joins (ms after watch()), ending with the first frame. */
	milestones: Record<string, number>;
}

/** 4: join -> first presented frame in Chromium, RTMP ingest, for a 1 s and a 4 s GOP. */
async function ttffRuns(browser: Browser, scripts: ProbeScripts, oursPage: string): Promise<TtffResult[]> {
	const out: TtffResult[] = [];
	for (const gopSeconds of [1, 4]) {
		const { server, url, hlsDir } = await startServer();
		const stream = `probe-gop${gopSeconds}`;
		const pub = await ProbePublisher.create({
			gopSeconds,
			targets: [{ kind: 'rtmp', url: `rtmp://127.0.0.1:${server.rtmp!.port}/live/${stream}` }],
		});
		const joins: number[] = [];
		const timelines: Record<string, number>[] = [];
		try {
			await waitLive(url, stream);
			await sleep(1500);
			log(`time to first frame, ${gopSeconds} s GOP, ${JOINS} joins`);
			for (let i = 0; i < JOINS; i++) {
				const run = await openOurs(browser, scripts, oursPage, url, stream);
				const deadline = Date.now() + 15_000;
				let ttff: number | null = null;
				while (Date.now() < deadline && ttff === null) {
					const r = await run.read();
					if (r.error) throw new Error(`join ${i}: ${r.error}`);
					if (r.results?.firstFrameAt) {
						ttff = r.results.firstFrameAt - r.joinedAt;
						// The first frame's last packet: capture time plus its receive delay.
						const first = r.results.samples[0];
						const received = first && first.receiveDelayMs !== null ? first.presentedAt - first.delayMs + first.receiveDelayMs - r.joinedAt : null;
						timelines.push({ ...(r.timeline ?? {}), ...(received !== null ? { firstFrameReceived: Math.round(received) } : {}), firstFrame: Math.round(ttff) });
					} else await sleep(20);
				}
				await run.page.close();
				if (ttff !== null) joins.push(ttff);
				// Spread the joins over the GOP: the wait for a keyframe depends on where in it a join lands.
				await sleep(((i * 0.37) % 1) * gopSeconds * 1000 + 300);
			}
		} finally {
			await pub.close();
			await server.close();
			fs.rmSync(hlsDir, { recursive: true, force: true });
		}
		const milestones: Record<string, number> = {};
		for (const key of ['socket', 'joined', 'transport', 'consumed', 'resumed', 'mediaConnected', 'firstFrameReceived', 'firstFrame']) {
			const values = timelines.map((t) => t[key]).filter((v): v is number => v !== undefined);
			if (values.length) milestones[key] = summarize(values).p50;
		}
		out.push({ gopSeconds, joins, summary: summarize(joins), milestones });
	}
	return out;
}

interface HlsRow {
	path: string;
	frameP50: number;
	frameP95: number;
	playerP50: number;
	playerP95: number;
	holdBackMs: number;
}

/** 5: the HLS benchmark, in a child process, shortened. */
async function hlsRuns(): Promise<{ rows: HlsRow[]; hlsjs: { p50: number; p95: number; samples: number } | null } | null> {
	log('HLS and LL-HLS beside nginx-rtmp (bench/hls-latency.ts)');
	const code = await new Promise<number | null>((resolve) => {
		const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'hls-latency.ts')], {
			stdio: ['ignore', 'ignore', 'inherit'],
			env: { ...process.env, BENCH_SECONDS: String(Math.max(20, SECONDS)) },
		});
		child.once('exit', resolve);
	});
	if (code !== 0) {
		log(`hls-latency exited with ${code}; HLS rows left out`);
		return null;
	}
	const data = JSON.parse(fs.readFileSync(path.join(RESULTS, 'hls-latency.json'), 'utf8')) as {
		rows: HlsRow[];
		hlsjs: { p50: number; p95: number; samples: number } | null;
	};
	return data;
}

const f = (v: number | null | undefined, d = 0): string => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(d));

function markdown(rows: LatencyRow[], ttff: TtffResult[], hls: Awaited<ReturnType<typeof hlsRuns>>, meta: Record<string, unknown>): string {
	const lines: string[] = [];
	lines.push(`Measured ${String(meta.date)} on ${String(meta.cpus)} cores (load average before: ${String(meta.loadBefore)}), ` +
		`720p30 H.264 (libx264 veryfast zerolatency, ${PROBE_DEFAULTS.bitrateKbps} kbit/s, 1 s GOP) with audio, ${SECONDS} s per row (browser rows: ${SESSIONS} viewer sessions of ${f(SECONDS / SESSIONS)} s each, pooled).`);
	lines.push('');
	lines.push('**WebRTC glass to glass** (ms). Video: capture → frame presented. Audio: capture → tone burst at the audio output. ' +
		'A/V: audio delay minus the delay of the picture captured with it (positive: sound after picture). "receive": capture → last packet of the frame in the browser. ' +
		'Page: "product" is /watch/NAME as shipped (muted autoplay, audio consumed, lip sync on); "library" is the viewer library on a bare page, video only.');
	lines.push('');
	lines.push('| path | viewer | page | audio | video p50 | video p95 | video p99 | audio p50 | audio p95 | A/V p50 | A/V p95 abs | video p50 per session | receive p50 | frames | lost | TTFF |');
	lines.push('|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
	for (const r of rows) {
		lines.push(
			`| ${r.name} | ${r.viewer === 'chromium' ? 'Chromium' : 'Node (werift + ffmpeg)'} | ${r.page ?? '–'} | ${r.audio ? 'yes' : 'no'} | ${f(r.g2g.p50)} | ${f(r.g2g.p95)} | ${f(r.g2g.p99)} | ${f(r.audioG2g?.p50)} | ${f(r.audioG2g?.p95)} | ${f(r.avOffset?.p50)} | ${f(r.avAbsP95)} | ${r.sessionP50s.map((v) => f(v)).join(' / ')} | ${f(r.receive?.p50)} | ${r.framesShown} | ${r.lost}/${r.lostOf} | ${f(r.ttffMs)} |`,
		);
	}
	const withReceiver = rows.filter((r) => r.receiver);
	if (withReceiver.length) {
		lines.push('');
		lines.push('**Where a browser holds media** (Chromium\'s getStats over the same windows, mean ms per frame or sample): the video jitter buffer and decoder; ' +
			'NetEq\'s buffer, its target (what the jitter it sees asks for) and its minimum (the floor lip sync or jitterBufferTarget set), the share of samples it ' +
			'stretched, squeezed or concealed, and the output device. With audio playing, Chromium\'s lip sync raises the faster path to meet the slower.');
		lines.push('');
		lines.push('| path | page | audio | video jitter buffer | video decode | audio jitter buffer | audio target | audio minimum | inserted % | removed % | concealed % | audio output |');
		lines.push('|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
		for (const r of withReceiver) {
			const d = r.receiver;
			lines.push(`| ${r.name} | ${r.page ?? '–'} | ${r.audio ? 'yes' : 'no'} | ${f(d?.videoJitterBufferMs)} | ${f(d?.videoDecodeMs)} | ${f(d?.audioJitterBufferMs)} | ${f(d?.audioJitterTargetMs)} | ${f(d?.audioJitterMinimumMs)} | ${f(d?.audioInsertedPct, 1)} | ${f(d?.audioRemovedPct, 1)} | ${f(d?.audioConcealedPct, 1)} | ${f(d?.audioPlayoutMs)} |`);
		}
	}
	const find = (ingest: Ingest): LatencyRow | undefined => rows.find((r) => r.ingest === ingest && r.audio && r.viewer === 'chromium');
	const [rtmp, rtp, bare, janus] = [find('rtmp'), find('rtp'), find('bare'), find('janus')];
	if (bare && (rtmp || rtp)) {
		lines.push('');
		lines.push('Against the floor (the same capture, Opus straight into mediasoup, same page), with audio: ' +
			[rtmp ? `RTMP ingest adds ${f(rtmp.g2g.p50 - bare.g2g.p50)} ms video / ${f((rtmp.audioG2g?.p50 ?? NaN) - (bare.audioG2g?.p50 ?? NaN))} ms audio at p50` : null,
				rtp ? `plain RTP ingest adds ${f(rtp.g2g.p50 - bare.g2g.p50)} ms video / ${f((rtp.audioG2g?.p50 ?? NaN) - (bare.audioG2g?.p50 ?? NaN))} ms audio` : null]
				.filter(Boolean).join('; ') +
			(janus ? `. Janus on the same RTP: video p50 ${f(janus.g2g.p50)} ms, audio p50 ${f(janus.audioG2g?.p50)} ms; our RTMP path is ${f((rtmp ?? rtp)!.g2g.p50 / janus.g2g.p50, 2)}× Janus's video p50.` : '.'));
	}
	lines.push('');
	lines.push('**Time to first frame** (Chromium, RTMP ingest, `watch()` called → first frame presented, ms):');
	lines.push('');
	lines.push('| GOP | joins | p50 | min | max | mean |');
	lines.push('|---|---:|---:|---:|---:|---:|');
	for (const t of ttff) lines.push(`| ${t.gopSeconds} s | ${t.joins.length} | ${f(t.summary.p50)} | ${f(t.summary.min)} | ${f(t.summary.max)} | ${f(t.summary.mean)} |`);
	const first = ttff[0];
	if (first) {
		lines.push('');
		lines.push(`Where the time goes (${first.gopSeconds} s GOP, median ms after \`watch()\`): ` +
			Object.entries(first.milestones).map(([k, v]) => `${k} ${f(v)}`).join(' → ') +
			'. Between the media connection and the first frame\'s last packet (firstFrameReceived), a passthrough stream waits for its next keyframe: RTMP cannot ask the encoder for one, so on average half a GOP.');
	}
	if (hls) {
		lines.push('');
		lines.push('**HLS** (publish → part/segment downloadable, and what a standard player shows with its live-edge hold-back, ms):');
		lines.push('');
		lines.push('| path | frame p50 | frame p95 | hold-back | player p50 | player p95 |');
		lines.push('|---|---:|---:|---:|---:|---:|');
		for (const r of hls.rows) lines.push(`| ${r.path} | ${f(r.frameP50)} | ${f(r.frameP95)} | ${f(r.holdBackMs)} | ${f(r.playerP50)} | ${f(r.playerP95)} |`);
		if (hls.hlsjs) lines.push(`\nhls.js in Chromium playing our LL-HLS: ${f(hls.hlsjs.p50)} ms behind the encoder at p50, ${f(hls.hlsjs.p95)} at p95 (${hls.hlsjs.samples} samples).`);
	}
	return `${lines.join('\n')}\n`;
}

/** A bar chart of p50/p95/p99 per path, drawn as SVG and photographed by Chromium. */
async function chart(browser: Browser, rows: LatencyRow[], file: string): Promise<void> {
	const W = 1000;
	const barH = 22;
	const gap = 14;
	const left = 400;
	const max = Math.max(200, ...rows.map((r) => (Number.isFinite(r.g2g.p99) ? r.g2g.p99 : 0))) * 1.25;
	const x = (v: number): number => left + ((W - left - 30) * v) / max;
	const H = 60 + rows.length * (barH + gap) + 40;
	let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="13">`;
	svg += `<rect width="${W}" height="${H}" fill="white"/><text x="20" y="28" font-size="16" font-weight="600">WebRTC glass to glass, 720p30, ms</text>`;
	const legend: [string, string][] = [['p50', '#2f6fd6'], ['p95', '#7ea6e8'], ['p99', '#c8d6f0']];
	legend.forEach(([name, color], i) => {
		svg += `<rect x="${W - 230 + i * 70}" y="16" width="14" height="14" fill="${color}"/><text x="${W - 212 + i * 70}" y="28">${name}</text>`;
	});
	rows.forEach((r, i) => {
		const y = 50 + i * (barH + gap);
		const label = `${r.name} → ${r.viewer === 'chromium' ? 'Chromium' : 'Node'}${r.audio ? '' : ' (video only)'}`;
		svg += `<text x="${left - 8}" y="${y + 16}" text-anchor="end">${label}</text>`;
		const parts: [number, string][] = [
			[r.g2g.p99, '#c8d6f0'],
			[r.g2g.p95, '#7ea6e8'],
			[r.g2g.p50, '#2f6fd6'],
		];
		for (const [v, color] of parts) if (Number.isFinite(v)) svg += `<rect x="${left}" y="${y}" width="${x(v) - left}" height="${barH}" fill="${color}"/>`;
		svg += `<text x="${x(Number.isFinite(r.g2g.p99) ? r.g2g.p99 : 0) + 6}" y="${y + 16}">${f(r.g2g.p50)} / ${f(r.g2g.p95)} / ${f(r.g2g.p99)}</text>`;
	});
	for (const tick of [0, 100, 200, 300, 400, 500, 750, 1000].filter((t) => t <= max)) {
		svg += `<line x1="${x(tick)}" x2="${x(tick)}" y1="44" y2="${H - 30}" stroke="#ddd"/><text x="${x(tick)}" y="${H - 14}" text-anchor="middle" fill="#666">${tick}</text>`;
	}
	svg += '</svg>';
	const page = await browser.newPage({ viewport: { width: W, height: H } });
	await page.setContent(`<html><body style="margin:0">${svg}</body></html>`);
	await page.screenshot({ path: file });
	await page.close();
}

async function main(): Promise<void> {
	const started = Date.now();
	fs.mkdirSync(RESULTS, { recursive: true });
	if (args.includes('--chart-only')) {
		// Redraw the chart from the last results without measuring again.
		const last = JSON.parse(fs.readFileSync(path.join(RESULTS, 'latency.json'), 'utf8')) as { webrtc: LatencyRow[] };
		const b = await launchChromium();
		await chart(b, last.webrtc, path.join(RESULTS, 'latency.png'));
		await b.close();
		return;
	}
	const loadBefore = os.loadavg().map((l) => l.toFixed(2)).join(' ');
	const oursPage = await servePage(await bundle(path.join(import.meta.dirname, 'probe/browser/ours-page.ts')));
	const janusPage = await servePage(await bundle(path.join(import.meta.dirname, 'probe/browser/janus-page.ts')));
	const scripts: ProbeScripts = {
		worklet: await bundle(path.join(import.meta.dirname, 'probe/browser/audio-worklet.ts')),
		product: await bundle(path.join(import.meta.dirname, 'probe/browser/product-page.ts')),
	};
	const browser = await launchChromium();
	const rows: LatencyRow[] = [];
	let ttff: TtffResult[] = [];
	let hls: Awaited<ReturnType<typeof hlsRuns>> = null;
	try {
		// --only-feed and --only-ttff run one part, for working on it (--only-product: the product-page rows alone).
		const only = args.includes('--only-feed') || args.includes('--only-product') || args.includes('--only-node') ? 'feed' : args.includes('--only-ttff') ? 'ttff' : null;
		if (!only || only === 'feed') rows.push(...(await feedRuns(browser, scripts, oursPage.url, janusPage.url)));
		if (!only || only === 'ttff') ttff = await ttffRuns(browser, scripts, oursPage.url);
		if (!SKIP_HLS && !only) hls = await hlsRuns();
		const meta = {
			date: new Date().toISOString(),
			cpus: os.cpus().length,
			loadBefore,
			loadAfter: os.loadavg().map((l) => l.toFixed(2)).join(' '),
			seconds: SECONDS,
			probe: PROBE_DEFAULTS,
			durationS: Math.round((Date.now() - started) / 1000),
			node: process.version,
		};
		const md = markdown(rows, ttff, hls, meta);
		if (only || SKIP_HLS) {
			// A partial run prints its table but leaves the full run's results alone.
			console.log(md);
			log(`partial run done in ${meta.durationS} s; bench/results left untouched`);
			return;
		}
		fs.writeFileSync(path.join(RESULTS, 'latency.json'), `${JSON.stringify({ meta, webrtc: rows, ttff, hls }, (_k, v: unknown) => (typeof v === 'number' ? round(v, 1) : v), 2)}\n`);
		fs.writeFileSync(path.join(RESULTS, 'latency.md'), md);
		await chart(browser, rows, path.join(RESULTS, 'latency.png'));
		console.log(md);
		log(`done in ${meta.durationS} s`);
	} finally {
		await browser.close();
		await oursPage.close();
		await janusPage.close();
	}
}

main().then(
	() => process.exit(0),
	(err: unknown) => {
		console.error(err);
		process.exit(1);
	},
);
