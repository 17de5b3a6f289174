import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../../server/config/load.js';
import type { ConfigInput } from '../../server/config/schema.js';
import { Server } from '../../server/server.js';

/** A logger for tests: silent unless SUBSECOND_TEST_LOG=debug|info|... is set. */
export function testLogger(): pino.Logger {
	return pino({ level: process.env.TEST_LOG ?? 'silent' });
}

function deepMerge<T>(base: T, over: unknown): T {
	if (typeof base !== 'object' || base === null || typeof over !== 'object' || over === null || Array.isArray(over)) {
		return (over === undefined ? base : over) as T;
	}
	const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
	for (const [k, v] of Object.entries(over)) out[k] = deepMerge(out[k], v);
	return out as T;
}

/**
 * Starts a real server on free ports (HTTP, RTMP and WebRTC all on port 0), a
 * fresh HLS folder, no config file and no env. Close it in afterAll/afterEach.
 */
export async function startTestServer(overrides: ConfigInput = {}): Promise<Server> {
	const hlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-test-hls-'));
	const base: ConfigInput = {
		http: { host: '127.0.0.1', port: 0 },
		rtmp: { host: '127.0.0.1', port: 0 },
		rtc: { port: 0, listenIp: '127.0.0.1', announcedIp: '127.0.0.1', workers: 1 },
		hls: { dir: hlsDir, cleanupGraceMs: 500 },
		log: { level: 'silent' },
	};
	const config = loadConfig({ env: {}, file: null, overrides: deepMerge(base, overrides) });
	const server = await Server.create(config, { logger: testLogger() });
	server.on('close', () => fs.rmSync(hlsDir, { recursive: true, force: true }));
	return server;
}

export function baseUrl(server: Server): string {
	return `${server.http.secure ? 'https' : 'http'}://127.0.0.1:${server.http.port}`;
}

/** Direct child PIDs of a process (Linux). */
export function childPids(pid: number = process.pid): number[] {
	const out: number[] = [];
	const taskDir = `/proc/${pid}/task`;
	let tasks: string[] = [];
	try {
		tasks = fs.readdirSync(taskDir);
	} catch {
		return out;
	}
	for (const t of tasks) {
		try {
			const s = fs.readFileSync(`${taskDir}/${t}/children`, 'utf8').trim();
			if (s) out.push(...s.split(/\s+/).map(Number));
		} catch {
			// the task ended meanwhile
		}
	}
	return out;
}

export function isAlive(pid: number): boolean {
	try {
		process.kill(pid, 0);
		return true;
	} catch {
		return false;
	}
}

/** Polls until `fn` returns a truthy value or the time is up. */
export async function eventually<T>(fn: () => T | Promise<T>, timeoutMs = 5000, intervalMs = 50): Promise<NonNullable<Awaited<T>>> {
	const deadline = Date.now() + timeoutMs;
	let last: unknown;
	for (;;) {
		try {
			const v = await fn();
			if (v) return v;
		} catch (err) {
			last = err;
		}
		if (Date.now() > deadline) {
			throw new Error(`condition not met within ${timeoutMs} ms${last instanceof Error ? `: ${last.message}` : ''}`);
		}
		await new Promise((r) => setTimeout(r, intervalMs));
	}
}
