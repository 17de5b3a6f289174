import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { TypedEmitter, waitFor } from '../../server/common/emitter.js';
import { SubsecondError, Unavailable, errorBody, httpStatusOf, rtmpStatusOf, Unauthorized } from '../../server/common/errors.js';
import { checkFfmpeg } from '../../server/common/ffmpeg.js';
import { SupervisedProcess, liveChildCount } from '../../server/common/process.js';
import { BoundedQueue } from '../../server/common/queue.js';
import { eventually, isAlive, testLogger } from '../helpers/server.js';

describe('TypedEmitter', () => {
	it('isolates a throwing listener from the others', () => {
		const e = new TypedEmitter<{ tick: [n: number] }>();
		const seen: number[] = [];
		e.on('tick', () => {
			throw new Error('boom');
		});
		e.on('tick', (n) => seen.push(n));
		expect(e.emit('tick', 1)).toBe(true);
		expect(seen).toEqual([1]);
	});

	it('supports once, off and waitFor with a timeout', async () => {
		const e = new TypedEmitter<{ a: [s: string] }>();
		const seen: string[] = [];
		e.once('a', (s) => seen.push(s));
		e.emit('a', 'x');
		e.emit('a', 'y');
		expect(seen).toEqual(['x']);
		expect(e.listenerCount('a')).toBe(0);
		const p = waitFor(e, 'a', 1000, (s) => s === 'z');
		e.emit('a', 'q');
		e.emit('a', 'z');
		expect(await p).toEqual(['z']);
		await expect(waitFor(e, 'a', 20)).rejects.toThrow(/timed out/);
		expect(e.listenerCount('a')).toBe(0);
	});
});

describe('BoundedQueue', () => {
	it('drops the oldest when full and counts drops', () => {
		const q = new BoundedQueue<number>(3);
		for (let i = 0; i < 5; i++) q.push(i);
		expect(q.size).toBe(3);
		expect(q.dropped).toBe(2);
		expect([q.shift(), q.shift(), q.shift(), q.shift()]).toEqual([2, 3, 4, undefined]);
		expect(() => new BoundedQueue(0)).toThrow(RangeError);
	});
});

describe('errors', () => {
	it('map once to HTTP, RTMP and signaling codes', () => {
		const e = new Unauthorized('no key');
		expect(httpStatusOf(e)).toBe(401);
		expect(rtmpStatusOf(e)).toBe('NetStream.Publish.Unauthorized');
		expect(errorBody(e)).toEqual({ code: 'unauthorized', message: 'no key' });
		// Internal details are not handed to clients.
		expect(errorBody(new Error('secret path /etc/x'))).toEqual({ code: 'internal', message: 'internal error' });
		expect(httpStatusOf(new Error('x'))).toBe(500);
		expect(new Unavailable('x')).toBeInstanceOf(SubsecondError);
	});
});

describe('SupervisedProcess', () => {
	it('restarts a crashed child with backoff and reaps it on close', async () => {
		const before = liveChildCount();
		const p = SupervisedProcess.create({
			name: 'sleeper',
			command: 'sleep',
			args: () => ['30'],
			logger: testLogger(),
			initialBackoffMs: 50,
		});
		const firstPid = p.child?.pid;
		expect(firstPid).toBeGreaterThan(0);
		const crashes: number[] = [];
		p.on('crash', (c) => crashes.push(c.delayMs));
		p.child?.kill('SIGKILL');
		await eventually(() => p.child !== null && p.child.pid !== firstPid, 5000);
		p.child?.kill('SIGKILL');
		await eventually(() => p.restarts === 2, 5000);
		expect(crashes).toEqual([50, 100]);
		const lastPid = p.child!.pid!;
		await p.close();
		await p.close(); // idempotent
		expect(isAlive(lastPid)).toBe(false);
		expect(liveChildCount()).toBe(before);
		expect(() => p.restart()).toThrow(/closed/);
	});

	it('escalates to SIGKILL when a child ignores SIGTERM', async () => {
		const p = SupervisedProcess.create({
			name: 'stubborn',
			command: 'sh',
			args: () => ['-c', 'trap "" TERM; sleep 30'],
			logger: testLogger(),
			killTimeoutMs: 200,
		});
		const pid = p.child!.pid!;
		await new Promise((r) => setTimeout(r, 100));
		await p.close();
		expect(isAlive(pid)).toBe(false);
	});
});

describe('checkFfmpeg', () => {
	it('accepts the installed ffmpeg', async () => {
		const info = await checkFfmpeg('ffmpeg');
		expect(info.encoders.has('libx264')).toBe(true);
		expect(info.encoders.has('libopus')).toBe(true);
	});

	it('says what to install when ffmpeg is missing', async () => {
		await expect(checkFfmpeg('/nonexistent/ffmpeg')).rejects.toThrow(/apt-get install ffmpeg/);
	});

	it('names the missing encoders of an ffmpeg without them', async () => {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-fake-ffmpeg-'));
		const fake = path.join(dir, 'ffmpeg');
		// A stand-in for a minimal ffmpeg build: only the native aac encoder.
		fs.writeFileSync(
			fake,
			'#!/bin/sh\nif [ "$2" = "-version" ]; then echo "ffmpeg version 9.9-minimal"; else printf "Encoders:\\n A..... aac                  AAC\\n"; fi\n',
			{ mode: 0o755 },
		);
		await expect(checkFfmpeg(fake)).rejects.toThrow(/lacks the encoder\(s\) libx264, libopus/);
		fs.rmSync(dir, { recursive: true, force: true });
	});
});
