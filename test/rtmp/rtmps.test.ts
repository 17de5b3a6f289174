import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../server/common/emitter.js';
import type { Server } from '../../server/server.js';
import { runFfmpeg, stopAllFfmpeg, testSourceArgs } from '../helpers/ffmpeg.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { RtmpTestClient } from './rtmp-client.js';

describe('RTMPS', () => {
	let dir: string;
	let server: Server;

	beforeAll(async () => {
		dir = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-rtmps-'));
		execFileSync('openssl', [
			'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
			'-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
		], { stdio: 'ignore' });
		server = await startTestServer({
			rtmp: { rtmps: { port: 0, cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') } },
		});
	});
	afterEach(async () => {
		await stopAllFfmpeg();
	});
	afterAll(async () => {
		await server.close();
		fs.rmSync(dir, { recursive: true, force: true });
	});

	it('reports the RTMPS port', async () => {
		const info = (await (await fetch(`${baseUrl(server)}/api/info`)).json()) as { rtmp: { rtmpsPort: number } };
		expect(info.rtmp.rtmpsPort).toBe(server.rtmp!.rtmpsPort);
		expect(server.rtmp!.rtmpsPort).toBeGreaterThan(0);
		expect(server.rtmp!.rtmpsPort).not.toBe(server.rtmp!.port);
	});

	it('takes an ffmpeg publish over rtmps://', async () => {
		const pubP = waitFor(server.registry, 'publish', 20_000, (s) => s.name === 'secure1');
		const ff = runFfmpeg([...testSourceArgs({ width: 320, height: 240 }), '-f', 'flv', `rtmps://127.0.0.1:${server.rtmp!.rtmpsPort}/live/secure1`]);
		const [, pub] = await pubP;
		expect(pub.protocol).toBe('rtmps');
		let n = 0;
		pub.on('video', () => n++);
		await eventually(() => n >= 25, 15_000);
		const info = (await (await fetch(`${baseUrl(server)}/api/streams/secure1`)).json()) as Record<string, unknown>;
		expect(info).toMatchObject({ live: true, video: { width: 320, height: 240 }, audio: { codec: 'aac' } });
		expect(server.rtmp!.connectionCount('rtmps')).toBe(1);
		const ended = waitFor(pub, 'end', 5000);
		await ff.stop();
		await ended;
	});

	it('closes a plain RTMP client on the TLS port and a TLS client on the plain port', async () => {
		const before = server.rtmp!.stats().tlsErrors;
		await expect(RtmpTestClient.connect(server.rtmp!.rtmpsPort!)).rejects.toThrow();
		await eventually(() => server.rtmp!.stats().tlsErrors > before, 5000);
		const s = tls.connect({ port: server.rtmp!.port, host: '127.0.0.1', rejectUnauthorized: false });
		await new Promise<void>((resolve) => {
			s.on('error', () => resolve());
			s.on('close', () => resolve());
		});
		s.destroy();
		await eventually(() => server.rtmp!.stats().connections === 0, 5000);
	});
});
