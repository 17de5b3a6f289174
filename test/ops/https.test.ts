import { execFile } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type tls from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from '../../server/server.js';
import { baseUrl, startTestServer } from '../helpers/server.js';

const execFileAsync = promisify(execFile);

function get(url: string, opts: https.RequestOptions): Promise<{ status: number; headers: Record<string, unknown>; body: string; cert: tls.PeerCertificate }> {
	return new Promise((resolve, reject) => {
		const req = https.get(url, opts, (res) => {
			const cert = (res.socket as tls.TLSSocket).getPeerCertificate();
			let body = '';
			res.setEncoding('utf8');
			res.on('data', (d: string) => (body += d));
			res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, cert }));
		});
		req.on('error', reject);
	});
}

describe('HTTPS', () => {
	let dir: string;
	let server: Server;
	let ca: Buffer;

	beforeAll(async () => {
		dir = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-tls-'));
		const cert = path.join(dir, 'cert.pem');
		const key = path.join(dir, 'key.pem');
		// A self-signed certificate for 127.0.0.1 and localhost, as an operator would test with.
		await execFileAsync('openssl', [
			'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
			'-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=subsecond-test',
			'-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
		]);
		ca = fs.readFileSync(cert);
		server = await startTestServer({ http: { tls: { cert, key } } });
	});

	afterAll(async () => {
		await server?.close();
		fs.rmSync(dir, { recursive: true, force: true });
	});

	it('serves the API over TLS with the configured certificate', async () => {
		expect(server.http.secure).toBe(true);
		const url = baseUrl(server);
		expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);

		const health = await get(`${url}/healthz`, { ca });
		expect(health.status).toBe(200);
		expect(JSON.parse(health.body)).toMatchObject({ ok: true });
		expect(health.cert.subject.CN).toBe('subsecond-test');

		const info = await get(`${url}/api/info`, { ca });
		expect(JSON.parse(info.body)).toMatchObject({ name: 'subsecond', http: { port: server.http.port, secure: true } });

		const metrics = await get(`${url}/metrics`, { ca });
		expect(metrics.status).toBe(200);
		expect(metrics.body).toMatch(/^subsecond_streams_live 0$/m);

		// The player page and its script, over TLS (browsers need HTTPS for WebRTC off localhost).
		const root = await get(`${url}/`, { ca });
		expect(root.status).toBe(200);
		expect(root.body).toContain('/assets/player.js');
		const watch = await get(`${url}/watch/cam`, { ca });
		expect(watch.status).toBe(200);
		const script = await get(`${url}/assets/player.js`, { ca });
		expect(script.status).toBe(200);
		expect(script.body.length).toBeGreaterThan(10_000);
	});

	it('a client that does not trust the certificate is refused, and plain HTTP gets no answer', async () => {
		await expect(get(`${baseUrl(server)}/healthz`, {})).rejects.toThrow(/self[- ]signed/i);
		// rejectUnauthorized: false is how a quick check against a self-signed server works.
		const insecure = await get(`${baseUrl(server)}/healthz`, { rejectUnauthorized: false });
		expect(insecure.status).toBe(200);
		const plain = `http://127.0.0.1:${server.http.port}/healthz`;
		await expect(fetch(plain, { signal: AbortSignal.timeout(5000) }).then((r) => r.status)).rejects.toThrow();
	});
});
