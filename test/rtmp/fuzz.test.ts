import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../server/common/emitter.js';
import type { Server } from '../../server/server.js';
import { runFfmpeg, stopAllFfmpeg, testSourceArgs } from '../helpers/ffmpeg.js';
import { eventually, startTestServer } from '../helpers/server.js';
import { mutate, prng } from './prng.js';

/**
 * Records what a real ffmpeg sends when it publishes (client -> server bytes)
 * by putting a recording TCP proxy between it and the server.
 */
async function recordSession(serverPort: number, name: string): Promise<Buffer> {
	const recorded: Buffer[] = [];
	const proxy = net.createServer((client) => {
		const upstream = net.connect({ port: serverPort, host: '127.0.0.1' });
		client.on('data', (d: Buffer) => {
			recorded.push(Buffer.from(d));
			upstream.write(d);
		});
		upstream.on('data', (d: Buffer) => client.write(d));
		client.on('close', () => upstream.destroy());
		upstream.on('close', () => client.destroy());
		client.on('error', () => undefined);
		upstream.on('error', () => undefined);
	});
	await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
	const port = (proxy.address() as net.AddressInfo).port;
	const ff = runFfmpeg([
		...testSourceArgs({ width: 160, height: 120, fps: 25, duration: 1, realtime: false, videoBitrateKbps: 150 }),
		'-f', 'flv', `rtmp://127.0.0.1:${port}/live/${name}`,
	]);
	const code = await ff.exited;
	await new Promise<void>((r) => proxy.close(() => r()));
	if (code !== 0) throw new Error(`recording publish failed: ${ff.stderr()}`);
	return Buffer.concat(recorded);
}

/** Sends one input on a fresh connection and waits until either side closes (bounded). */
function replay(port: number, input: Buffer, r: ReturnType<typeof prng>): Promise<void> {
	return new Promise((resolve) => {
		const s = net.connect({ port, host: '127.0.0.1' });
		const done = (): void => {
			clearTimeout(timer);
			s.destroy();
			resolve();
		};
		const timer = setTimeout(done, 3000);
		s.on('error', done);
		s.on('close', done);
		s.on('data', () => undefined);
		s.on('connect', () => {
			let off = 0;
			while (off < input.length && !s.destroyed) {
				const n = 1 + r.int(16_384);
				s.write(input.subarray(off, off + n));
				off += n;
			}
			// Half-close: the server sees the end of input, as when an encoder stops.
			s.end();
		});
	});
}

describe('RTMP fuzzing against a live server', () => {
	let server: Server;
	const rejections: unknown[] = [];
	const onRejection = (reason: unknown): void => void rejections.push(reason);

	beforeAll(async () => {
		process.on('unhandledRejection', onRejection);
		process.on('uncaughtException', onRejection);
		server = await startTestServer({ hls: { enabled: false } });
	});
	afterAll(async () => {
		await stopAllFfmpeg();
		await server.close();
		process.off('unhandledRejection', onRejection);
		process.off('uncaughtException', onRejection);
	});

	it('survives thousands of mutated, truncated and random sessions while a good publisher streams on', async () => {
		const port = server.rtmp!.port;
		const session = await recordSession(port, 'fuzzsrc');
		expect(session.length).toBeGreaterThan(3073 + 1000);
		await eventually(() => server.rtmp!.stats().connections === 0, 5000);

		const goodName = 'good-publisher-stays-up';
		const pubP = waitFor(server.registry, 'publish', 20_000, (s) => s.name === goodName);
		runFfmpeg([...testSourceArgs({ width: 320, height: 240, fps: 25 }), '-f', 'flv', `rtmp://127.0.0.1:${port}/live/${goodName}`]);
		const [, good] = await pubP;
		let goodFrames = 0;
		good.on('video', () => goodFrames++);
		await eventually(() => goodFrames > 10, 15_000);

		const r = prng(0x5eed);
		const handshake = session.subarray(0, 1 + 1536 * 2);
		const inputs = (i: number): Buffer => {
			switch (i % 10) {
				case 0:
					return r.bytes(r.int(4096));
				case 1:
					// A valid handshake, then noise: straight into the chunk layer.
					return Buffer.concat([handshake, r.bytes(r.int(8192))]);
				case 2:
					return session.subarray(0, r.int(session.length));
				default: {
					let m = mutate(session, r);
					for (let k = r.int(3); k > 0; k--) m = mutate(m, r);
					return m;
				}
			}
		};

		// Up to 3000 cases or 60 s, but at least minCases whatever the machine's speed.
		const started = Date.now();
		const deadline = started + 60_000;
		const maxCases = 3000;
		const minCases = 200;
		const parallel = 8;
		let cases = 0;
		let lastCheck = Date.now();
		let framesAtLastCheck = goodFrames;
		let checks = 0;
		const worker = async (): Promise<void> => {
			while (cases < maxCases && (Date.now() < deadline || cases < minCases)) {
				const input = inputs(cases++);
				await replay(port, input, r);
				if (Date.now() - lastCheck >= 3000) {
					// The good publisher keeps getting frames through the whole run.
					expect(goodFrames).toBeGreaterThan(framesAtLastCheck);
					framesAtLastCheck = goodFrames;
					lastCheck = Date.now();
					checks++;
				}
			}
		};
		await Promise.all(Array.from({ length: parallel }, () => worker()));
		const elapsed = Date.now() - started;
		console.log(`rtmp fuzz: ${cases} cases in ${elapsed} ms, ${checks} liveness checks, stats ${JSON.stringify(server.rtmp!.stats())}`);

		expect(cases).toBeGreaterThanOrEqual(minCases);
		expect(rejections).toEqual([]);
		expect(good.ended).toBe(false);
		const before = goodFrames;
		await eventually(() => goodFrames > before + 10, 10_000);
		// Every fuzz connection is gone; only the good publisher remains.
		await eventually(() => server.rtmp!.stats().connections === 1, 10_000);
		expect(server.rtmp!.connections()[0]?.stream).toBe(goodName);
		expect(server.rtmp!.stats().malformedMessages).toBeGreaterThan(0);
	}, 180_000);
});
