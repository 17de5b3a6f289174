import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signViewerToken } from '../../server/auth/viewer-jwt.js';
import { SubsecondError } from '../../server/common/errors.js';
import { parseHlsUrl } from '../../server/hls/http.js';
import type { Server } from '../../server/server.js';
import { stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { publishFromFfmpeg } from '../helpers/flv-publisher.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { parsePlaylist } from './helpers/m3u8.js';

const SECRET = 'top-secret-6f1c2d';

/** A raw GET over a socket: the path goes on the wire byte for byte (clients would normalise or refuse it). */
function rawGet(port: number, rawPath: string): Promise<{ status: number; body: string }> {
	return new Promise((resolve, reject) => {
		const sock = net.connect(port, '127.0.0.1', () => {
			sock.write(`GET ${rawPath} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`, 'latin1');
		});
		let data = '';
		sock.setEncoding('latin1');
		sock.on('data', (d: string) => (data += d));
		sock.on('error', reject);
		sock.on('end', () => {
			const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0);
			resolve({ status, body: data.slice(data.indexOf('\r\n\r\n') + 4) });
		});
	});
}

describe('HLS path safety', () => {
	let server: Server;
	let root: string;
	beforeAll(async () => {
		root = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-hls-sec-'));
		const dir = path.join(root, 'hls');
		fs.mkdirSync(path.join(dir, 'cam'), { recursive: true });
		// Secrets next to the HLS folder, inside it and inside the stream's folder.
		fs.writeFileSync(path.join(root, 'secret.txt'), SECRET);
		fs.writeFileSync(path.join(dir, 'secret.txt'), SECRET);
		fs.writeFileSync(path.join(dir, 'cam', 'secret.txt'), SECRET);
		fs.writeFileSync(path.join(dir, 'cam', 'secret.m4s'), SECRET);
		server = await startTestServer({ hls: { dir } });
	});
	afterAll(async () => {
		await server.close();
		await stopAllFfmpeg();
		fs.rmSync(root, { recursive: true, force: true });
	});

	it('keeps foreign files in the HLS folder at start-up', () => {
		expect(fs.readFileSync(path.join(root, 'hls', 'cam', 'secret.txt'), 'utf8')).toBe(SECRET);
	});

	it('never serves a file outside the stream folder, however the path is spelled', async () => {
		const pub = publishFromFfmpeg(server.registry, 'cam', { duration: 30 });
		await eventually(async () => (await fetch(`${baseUrl(server)}/hls/cam/index.m3u8`)).ok, 15_000);
		const rel = path.relative('/', path.join(root, 'secret.txt'));
		const attempts = [
			'/hls/cam/../secret.txt',
			'/hls/cam/../../secret.txt',
			'/hls/cam/../../../secret.txt',
			'/hls/../secret.txt',
			'/hls/cam/secret.txt',
			'/hls/cam/secret.m4s',
			'/hls/cam/..%2fsecret.txt',
			'/hls/cam/..%2F..%2Fsecret.txt',
			'/hls/cam/%2e%2e/secret.txt',
			'/hls/cam/%2e%2e%2f%2e%2e%2fsecret.txt',
			'/hls/cam/%252e%252e%252fsecret.txt',
			'/hls/cam/..%5csecret.txt',
			'/hls/cam/..\\secret.txt',
			'/hls/%2e%2e/cam/index.m3u8',
			'/hls/cam%2f..%2f..%2fsecret.txt/index.m3u8',
			`/hls/cam/%2F${encodeURIComponent(rel)}`,
			`/hls/cam//${rel}`,
			`/hls/cam/${encodeURIComponent(path.join(root, 'secret.txt'))}`,
			'/hls/cam/index.m3u8%00.txt',
			'/hls/cam/seg-aaaaaaaa-1.m4s%00',
			'/hls/cam/init.mp4/..',
			'/hls/cam/.',
			'/hls/cam/',
			'/hls/cam/%',
			'/hls/cam/%zz',
			'/hls/cam/%c0%ae%c0%ae/secret.txt',
			'/hls/cam/INDEX.M3U8',
			'/hls/cam/ index.m3u8',
		];
		for (const p of attempts) {
			const r = await rawGet(server.http.port, p);
			expect([400, 404], `${p} -> ${r.status}`).toContain(r.status);
			expect(r.body).not.toContain(SECRET);
		}
		// Dot segments and encoded separators are refused outright, not looked up.
		for (const p of ['/hls/cam/../secret.txt', '/hls/cam/..%2fsecret.txt', '/hls/cam/%2e%2e/secret.txt', '/hls/cam/index.m3u8%00.txt', '/hls/cam/..%5csecret.txt']) {
			expect((await rawGet(server.http.port, p)).status, p).toBe(400);
		}
		// The real files are still served.
		expect((await rawGet(server.http.port, '/hls/cam/index.m3u8')).status).toBe(200);
		expect((await rawGet(server.http.port, '/hls/cam/init.mp4')).status).toBe(200);
		await pub.stop();
	});

	it('parses only well-formed HLS paths (fuzz)', () => {
		const alphabet = ['/', '.', '..', '%2e', '%2f', '%5c', '%00', '%', 'a', 'cam', 'index.m3u8', 'init.mp4', 'seg-', 'part-', '-1', '.m4s', '\\', '~', ' '];
		let seed = 7;
		const rnd = (): number => {
			seed = (seed * 1103515245 + 12345) & 0x7fffffff;
			return seed / 0x7fffffff;
		};
		for (let i = 0; i < 5000; i++) {
			let p = '/hls/';
			const n = 1 + Math.floor(rnd() * 8);
			for (let j = 0; j < n; j++) p += alphabet[Math.floor(rnd() * alphabet.length)];
			try {
				const r = parseHlsUrl(p);
				expect(r.stream).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/);
				expect(r.stream).not.toContain('..');
				expect(r.fileName).toMatch(/^(index\.m3u8|init\.mp4|init-[a-z0-9]{8}-\d+\.mp4|seg-[a-z0-9]{8}-\d+\.m4s|part-[a-z0-9]{8}-\d+\.m4s)$/);
			} catch (err) {
				expect(err).toBeInstanceOf(SubsecondError);
				expect(['bad_request', 'not_found']).toContain((err as SubsecondError).code);
			}
		}
	});
});

describe('HLS with viewer tokens required', () => {
	let server: Server;
	const jwtSecret = 'hls-test-secret-that-is-long-enough';
	beforeAll(async () => {
		server = await startTestServer({ auth: { viewer: { required: true, jwtSecret } } });
	});
	afterAll(async () => {
		await server.close();
		await stopAllFfmpeg();
	});

	it('needs ?token= on every request and carries it into the playlist URIs', async () => {
		const url = baseUrl(server);
		const pub = publishFromFfmpeg(server.registry, 'paid', { duration: 30 });
		const token = await signViewerToken({ secret: jwtSecret, stream: 'paid', expiresInSec: 600 });
		const other = await signViewerToken({ secret: jwtSecret, stream: 'free', expiresInSec: 600 });
		const m3u8 = `${url}/hls/paid/index.m3u8`;
		const text = await eventually(async () => {
			const r = await fetch(`${m3u8}?token=${encodeURIComponent(token)}`);
			return r.ok ? r.text() : null;
		}, 15_000);
		const pl = parsePlaylist(text);
		const enc = encodeURIComponent(token);
		expect(pl.segments[0]!.map).toBe(`init.mp4?token=${enc}`);
		expect(pl.preloadHint).toMatch(new RegExp(`\\.m4s\\?token=${enc.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
		expect((await fetch(`${url}/hls/paid/${pl.segments[0]!.map}`)).status).toBe(200);
		expect((await fetch(m3u8)).status).toBe(401);
		expect((await fetch(`${m3u8}?token=${encodeURIComponent(other)}`)).status).toBe(401);
		expect((await fetch(`${m3u8}?token=not.a.jwt`)).status).toBe(401);
		expect((await fetch(`${url}/hls/paid/init.mp4`)).status).toBe(401);
		await pub.stop();
	});
});
