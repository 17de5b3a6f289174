// What a Prometheus scrape of /metrics costs as viewers grow, and how the time
// budget of the mediasoup stats poll bounds it.
//
//   node --import tsx bench/metrics-scrape.ts [--levels 0,100,500,1000] [--scrapes 10]
//
// A real server (one mediasoup worker) carries one stream published by ffmpeg
// through the bridge; "viewers" are WebRTC transports with a video and an audio
// consumer each (not connected: getStats costs the same IPC round trip). Each
// level runs scrapes through HTTP with the default budget, and full polls with
// an unbounded budget to measure the per-object cost. Prints a markdown table,
// writes bench/results/metrics-scrape.json.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import type { types } from 'mediasoup';
import { loadConfig } from '../server/config/load.js';
import { Metrics } from '../server/metrics/index.js';
import { Server } from '../server/server.js';
import { stopAllFfmpeg } from '../test/helpers/ffmpeg.js';
import { publishFromFfmpeg } from '../test/helpers/flv-publisher.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string): string => {
	const i = args.indexOf(`--${name}`);
	return i !== -1 && args[i + 1] ? args[i + 1]! : def;
};
const LEVELS = arg('levels', '0,100,500,1000').split(',').map(Number);
const SCRAPES = Number(arg('scrapes', '10'));
const BUDGET_MS = 250;
const DEADLINE = Date.now() + 4 * 60_000;

function pct(values: number[], p: number): number {
	const s = [...values].sort((a, b) => a - b);
	return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

function gauge(text: string, name: string): number {
	const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
	return m ? Number(m[1]) : NaN;
}

async function main(): Promise<void> {
	const hlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-bench-hls-'));
	const config = loadConfig({
		env: {},
		file: null,
		overrides: {
			http: { host: '127.0.0.1', port: 0 },
			rtmp: { enabled: false },
			rtc: { port: 0, listenIp: '127.0.0.1', announcedIp: '127.0.0.1', workers: 1 },
			hls: { dir: hlsDir },
			metrics: { sfuStatsBudgetMs: BUDGET_MS, sfuStatsMaxAgeMs: 0 },
			log: { level: 'silent' },
		},
	});
	const server = await Server.create(config, { logger: pino({ level: 'silent' }) });
	// A second collector with no budget, to time complete polls.
	const full = new Metrics({ registry: server.registry, pool: server.pool, logger: server.logger, sfuStatsBudgetMs: 10_000, sfuStatsMaxAgeMs: 0 });
	const url = `http://127.0.0.1:${server.http.port}/metrics`;
	const rows: Record<string, number>[] = [];
	const transports: types.WebRtcTransport[] = [];
	try {
		const pub = publishFromFfmpeg(server.registry, 'bench', { width: 640, height: 360, fps: 25 });
		const t0 = Date.now();
		while (server.routers.producers('bench').length < 2) {
			if (Date.now() - t0 > 30_000) throw new Error('the bridge did not produce within 30 s');
			await new Promise((r) => setTimeout(r, 100));
		}
		const producers = server.routers.producers('bench');
		const viewer = await server.routers.viewerRouter('bench');
		const caps = viewer.router.rtpCapabilities;

		for (const level of LEVELS) {
			if (Date.now() > DEADLINE) break;
			while (transports.length < level) {
				const t = await viewer.router.createWebRtcTransport({ webRtcServer: viewer.slot.webRtcServer });
				for (const p of producers) await t.consume({ producerId: p.id, rtpCapabilities: caps, paused: false });
				transports.push(t);
			}
			// Warm up (first poll of new objects), then measure.
			await (await fetch(url)).text();
			const wall: number[] = [];
			const polledRatio: number[] = [];
			const cpu0 = process.cpuUsage();
			const w0 = (await server.pool.resourceUsage())[0]!.usage;
			for (let i = 0; i < SCRAPES; i++) {
				const t = performance.now();
				const text = await (await fetch(url)).text();
				wall.push(performance.now() - t);
				polledRatio.push(gauge(text, 'subsecond_sfu_stats_polled_ratio'));
			}
			const cpu = process.cpuUsage(cpu0);
			const w1 = (await server.pool.resourceUsage())[0]!.usage;
			const fullMs: number[] = [];
			for (let i = 0; i < 3; i++) {
				const t = performance.now();
				await full.scrape();
				fullMs.push(performance.now() - t);
			}
			const objects = level * 3;
			const fullP50 = pct(fullMs, 50);
			rows.push({
				viewers: level,
				objects,
				scrapeP50Ms: pct(wall, 50),
				scrapeP95Ms: pct(wall, 95),
				polledRatio: pct(polledRatio, 50),
				nodeCpuMsPerScrape: (cpu.user + cpu.system) / 1000 / SCRAPES,
				workerCpuMsPerScrape: (w1.ru_utime + w1.ru_stime - w0.ru_utime - w0.ru_stime) / (SCRAPES + 3),
				fullPollMs: fullP50,
				usPerObject: objects > 0 ? (fullP50 * 1000) / objects : NaN,
			});
			console.error(`level ${level} done`);
		}
		await pub.stop();
	} finally {
		for (const t of transports) t.close();
		full.close();
		await server.close();
		await stopAllFfmpeg();
		fs.rmSync(hlsDir, { recursive: true, force: true });
	}

	const f = (n: number, d = 1): string => (Number.isFinite(n) ? n.toFixed(d) : '–');
	console.log(`\n/metrics scrape cost (1 mediasoup worker, budget ${BUDGET_MS} ms, ${SCRAPES} scrapes per level, ${os.cpus().length} CPUs shared)\n`);
	console.log('| viewers | stats objects | scrape p50 ms | scrape p95 ms | polled per scrape | node CPU ms/scrape | worker CPU ms/scrape | full poll ms | µs per object |');
	console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
	for (const r of rows) {
		console.log(
			`| ${r.viewers} | ${r.objects} | ${f(r.scrapeP50Ms!)} | ${f(r.scrapeP95Ms!)} | ${f(r.polledRatio! * 100, 0)} % | ${f(r.nodeCpuMsPerScrape!)} | ${f(r.workerCpuMsPerScrape!)} | ${f(r.fullPollMs!)} | ${f(r.usPerObject!)} |`,
		);
	}
	const out = path.join(import.meta.dirname, 'results', 'metrics-scrape.json');
	fs.mkdirSync(path.dirname(out), { recursive: true });
	fs.writeFileSync(out, JSON.stringify({ when: new Date().toISOString(), budgetMs: BUDGET_MS, scrapes: SCRAPES, cpus: os.cpus().length, rows }, null, 2));
	console.log(`\nwrote ${path.relative(process.cwd(), out)}`);
}

await main();
