import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import * as mediasoup from 'mediasoup';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');

describe('worker provisioning', () => {
	it('installed a worker where mediasoup looks by default, from the project cache', () => {
		expect(mediasoup.version).toBe('3.12.16');
		expect(fs.existsSync(mediasoup.workerBin)).toBe(true);
		const cached = path.join(ROOT, '.cache', 'mediasoup-worker', `3.12.16-${process.platform}-${process.arch}`, 'mediasoup-worker');
		expect(fs.existsSync(cached)).toBe(true);
	});

	it('reuses the cached worker on a second install without rebuilding', () => {
		const env = { ...process.env };
		delete env.MEDIASOUP_WORKER_BIN;
		const res = spawnSync(process.execPath, ['scripts/provision-worker.mjs'], { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 });
		expect(res.status).toBe(0);
		expect(res.stdout).toContain('using the cached worker');
		expect(res.stdout).not.toContain('building');
	});

	it('ignores a MEDIASOUP_WORKER_BIN that does not run, and says so', () => {
		const res = spawnSync(process.execPath, ['scripts/provision-worker.mjs'], {
			cwd: ROOT,
			env: { ...process.env, MEDIASOUP_WORKER_BIN: '/nonexistent/mediasoup-worker' },
			encoding: 'utf8',
			timeout: 60_000,
		});
		expect(res.status).toBe(0);
		expect(res.stdout).toContain('is not a runnable mediasoup');
		expect(res.stdout).toContain('using the cached worker');
	});
});
