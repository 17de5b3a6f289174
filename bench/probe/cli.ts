/**
 * The latency probe against any subsecond server, e.g. a production one:
 * publishes timecoded frames with tone-marked audio from one capture clock
 * and watches them back, printing video and audio glass-to-glass delay, the
 * A/V offset and time to first frame. The Chromium viewer is the server's own
 * player page (/watch/NAME) as a viewer opens it. Publisher and viewer run
 * here, so only this machine's clock is used.
 *
 *   npm run probe -- --server http://HOST:8080 [--rtmp rtmp://HOST:1935/live] [--stream probe]
 *                    [--key SECRET] [--seconds 30] [--viewer node|chromium] [--gop 1] [--no-audio]
 *
 * Without --rtmp the probe publishes over plain RTP (POST /api/streams/NAME/rtp).
 */
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { avOffsets } from './audio-marks.js';
import type { AudioSample } from './audio-marks.js';
import { bundle, launchChromium } from './chromium.js';
import { NodeProbeViewer } from './node-viewer.js';
import { PROBE_DEFAULTS, ProbePublisher } from './publisher.js';
import type { ProbeTarget } from './publisher.js';
import { framesLost, summarize } from './stats.js';
import type { ProbeResults } from './types.js';

function usage(msg?: string): never {
	if (msg) console.error(`probe: ${msg}`);
	console.error('usage: npm run probe -- --server http://HOST:8080 [--rtmp rtmp://HOST:1935/live] [--stream NAME] [--key KEY] [--seconds N] [--viewer node|chromium] [--gop S] [--no-audio]');
	process.exit(2);
}

const argv = process.argv.slice(2);
const opt = (name: string): string | undefined => {
	const i = argv.indexOf(`--${name}`);
	return i >= 0 ? argv[i + 1] : undefined;
};
const server = opt('server') ?? usage('--server is required');
const stream = opt('stream') ?? 'probe';
const key = opt('key');
const seconds = Number(opt('seconds') ?? 30);
const viewerKind = opt('viewer') ?? 'node';
const gopSeconds = Number(opt('gop') ?? 1);
const audio = !argv.includes('--no-audio');
if (!['node', 'chromium'].includes(viewerKind)) usage('--viewer is node or chromium');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function target(): Promise<{ target: ProbeTarget; stop: () => Promise<void> }> {
	const rtmp = opt('rtmp');
	if (rtmp) {
		const url = `${rtmp.replace(/\/$/, '')}/${stream}${key ? `?key=${encodeURIComponent(key)}` : ''}`;
		return { target: { kind: 'rtmp', url }, stop: () => Promise.resolve() };
	}
	const q = key ? `?key=${encodeURIComponent(key)}` : '';
	const res = await fetch(`${server}/api/streams/${stream}/rtp${q}`, { method: 'POST' });
	if (res.status !== 201) usage(`POST /api/streams/${stream}/rtp answered ${res.status}: ${await res.text()}`);
	const a = (await res.json()) as { video: ProbeTargetVideo; audio: ProbeTargetVideo };
	return {
		target: { kind: 'rtp', outputs: [{ video: a.video, audio: a.audio }] },
		stop: async () => {
			await fetch(`${server}/api/streams/${stream}/rtp${q}`, { method: 'DELETE' }).catch(() => undefined);
		},
	};
}
type ProbeTargetVideo = { ip: string; port: number; payloadType: number; ssrc: number };

async function main(): Promise<void> {
	const { target: t, stop } = await target();
	const pub = await ProbePublisher.create({ targets: [t], gopSeconds, audio });
	console.error(`probe: publishing ${PROBE_DEFAULTS.width}x${PROBE_DEFAULTS.height}@${PROBE_DEFAULTS.fps} (${t.kind}) as ${stream}`);
	let results: ProbeResults;
	let heard: AudioSample[] = [];
	let joinedAt: number;
	let close: () => Promise<void>;
	await sleep(1500);
	if (viewerKind === 'node') {
		const v = await NodeProbeViewer.create({ server, stream, width: PROBE_DEFAULTS.width, height: PROBE_DEFAULTS.height });
		results = v.results;
		heard = v.audio;
		joinedAt = v.joinedAt;
		close = () => v.close();
	} else {
		const worklet = await bundle(path.join(import.meta.dirname, 'browser/audio-worklet.ts'));
		const product = await bundle(path.join(import.meta.dirname, 'browser/product-page.ts'));
		const browser = await launchChromium();
		const p = await browser.newPage({ viewport: { width: 1280, height: 720 } });
		await p.addInitScript({ content: `window.probeWorkletSource = ${JSON.stringify(worklet)};` });
		await p.addInitScript({ content: product });
		joinedAt = performance.timeOrigin + performance.now();
		await p.goto(`${server}/watch/${encodeURIComponent(stream)}`);
		const live: { results: ProbeResults } = { results: { samples: [], unreadable: 0, firstFrameAt: null, width: 0, height: 0 } };
		results = live.results;
		close = async () => {
			type Probe = { results: ProbeResults | null; joinedAt: number; error: string | null; audio?: { samples: AudioSample[] } | null };
			const r = await p.evaluate(() => (globalThis as unknown as { probe?: Probe }).probe);
			if (r?.error) console.error(`probe: page error: ${r.error}`);
			if (r?.results) Object.assign(live.results, r.results);
			heard = r?.audio?.samples ?? [];
			await browser.close();
		};
	}
	const since = performance.timeOrigin + performance.now() + 3000;
	await sleep((seconds + 3) * 1000);
	await close();
	await pub.close();
	await stop();
	const samples = results.samples.filter((s) => s.presentedAt >= since);
	const g2g = summarize(samples.map((s) => s.delayMs));
	const a = heard.filter((x) => x.markMs + x.delayMs >= since);
	const ag2g = summarize(a.map((x) => x.delayMs));
	const av = summarize(avOffsets(a, samples.map((s) => ({ captureMs: s.presentedAt - s.delayMs, delayMs: s.delayMs }))).map(Math.abs));
	const { lost, of } = framesLost(pub.sentSeqs, samples.map((s) => s.seq));
	const ttff = results.firstFrameAt ? results.firstFrameAt - joinedAt : null;
	const f = (v: number): string => (Number.isFinite(v) ? v.toFixed(0) : '–');
	console.log(`video glass to glass (ms): p50 ${f(g2g.p50)}  p95 ${f(g2g.p95)}  p99 ${f(g2g.p99)}  min ${f(g2g.min)}  max ${f(g2g.max)}  (${g2g.n} frames)`);
	if (audio) {
		console.log(`audio glass to glass (ms, ${viewerKind === 'node' ? 'received' : 'played out'}): p50 ${f(ag2g.p50)}  p95 ${f(ag2g.p95)}  (${ag2g.n} bursts)`);
		console.log(`|A/V offset| (ms): p50 ${f(av.p50)}  p95 ${f(av.p95)}`);
	}
	console.log(`frames lost: ${lost} of ${of}; unreadable: ${results.unreadable}; time to first frame: ${ttff === null ? '–' : `${f(ttff)} ms`}`);
	console.log(`publisher: ${pub.stats.frames} frames encoded, ${pub.stats.skipped} skipped (encoder behind)`);
}

main().then(
	() => process.exit(0),
	(err: unknown) => {
		console.error(err);
		process.exit(1);
	},
);
