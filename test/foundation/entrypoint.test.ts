import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { childPids, eventually, isAlive } from '../helpers/server.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

/** `npm start`'s entry point, as a user runs it, with every port on 0. */
describe('npm start entry point', () => {
	const hlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-entry-'));
	afterAll(() => fs.rmSync(hlsDir, { recursive: true, force: true }));

	it('boots on port 0, answers /healthz and /api/info, and exits cleanly on SIGTERM', async () => {
		const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
			cwd: ROOT,
			env: {
				PATH: process.env.PATH,
				HOME: process.env.HOME,
				SUBSECOND_HTTP_PORT: '0',
				SUBSECOND_RTMP_PORT: '0',
				SUBSECOND_RTC_PORT: '0',
				SUBSECOND_HTTP_HOST: '127.0.0.1',
				SUBSECOND_RTMP_HOST: '127.0.0.1',
				SUBSECOND_HLS_DIR: hlsDir,
				SUBSECOND_LOG_FORMAT: 'json',
			},
			stdio: ['ignore', 'pipe', 'pipe'],
		});
		let out = '';
		let err = '';
		child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
		child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
		const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
		try {
			const port = await eventually(() => {
				for (const line of out.split('\n')) {
					if (!line.startsWith('{')) continue;
					const rec = JSON.parse(line) as { msg?: string; component?: string; port?: number };
					if (rec.component === 'http' && rec.msg === 'http listening') return rec.port;
				}
				return undefined;
			}, 30_000).catch((e: unknown) => {
				throw new Error(`server did not start: ${String(e)}\nstdout:\n${out}\nstderr:\n${err}`);
			});
			const health = await fetch(`http://127.0.0.1:${port}/healthz`);
			expect(health.status).toBe(200);
			expect(await health.json()).toMatchObject({ ok: true });
			const info = (await (await fetch(`http://127.0.0.1:${port}/api/info`)).json()) as {
				http: { port: number };
				rtc: { ports: { udp: number; tcp: number }[] };
			};
			expect(info.http.port).toBe(port);
			expect(info.rtc.ports.length).toBeGreaterThan(0);
			for (const p of info.rtc.ports) {
				expect(p.udp).toBeGreaterThan(0);
				expect(p.tcp).toBeGreaterThan(0);
			}
			// The start banner says where to publish and where to watch.
			expect(out).toContain('/watch/NAME');

			const children = childPids(child.pid);
			expect(children.length).toBeGreaterThan(0); // the mediasoup workers
			child.kill('SIGTERM');
			expect(await exited).toBe(0);
			expect(out).toContain('stopped');
			await eventually(() => children.every((pid) => !isAlive(pid)), 5000);
		} finally {
			if (child.exitCode === null) child.kill('SIGKILL');
		}
	});

	it('refuses to start with a config error that names the key', async () => {
		const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
			cwd: ROOT,
			env: { PATH: process.env.PATH, HOME: process.env.HOME, SUBSECOND_HTTP_PORT: 'eighty' },
			stdio: ['ignore', 'pipe', 'pipe'],
		});
		let err = '';
		child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
		const code = await new Promise<number | null>((r) => child.once('exit', r));
		expect(code).toBe(1);
		expect(err).toContain('SUBSECOND_HTTP_PORT');
	});
});
