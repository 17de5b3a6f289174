import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { z } from 'zod';
import type { Server } from '../../server/server.js';
import { stopAllFfmpeg } from '../helpers/ffmpeg.js';
import { publishFromFfmpeg } from '../helpers/flv-publisher.js';
import { baseUrl, eventually, startTestServer } from '../helpers/server.js';
import { HookServer } from './helpers.js';

// docs/openapi.yaml is checked two ways: as a document (structure, references,
// coverage of the contract), and against the real server, whose answers and
// webhook payloads must match the documented schemas.

type Json = Record<string, unknown>;
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const doc = YAML.parse(fs.readFileSync(path.join(ROOT, 'docs', 'openapi.yaml'), 'utf8')) as {
	openapi: string;
	paths: Record<string, Record<string, Json>>;
	webhooks: Record<string, Record<string, Json>>;
	components: { schemas: Record<string, Json> } & Record<string, Record<string, unknown>>;
};

function resolveRef(ref: string): unknown {
	const parts = ref.replace(/^#\//, '').split('/');
	let cur: unknown = doc;
	for (const p of parts) cur = (cur as Json | undefined)?.[p];
	return cur;
}

/** The schema with every $ref replaced by its target (our schemas are not recursive). */
function inline(s: unknown): unknown {
	if (Array.isArray(s)) return s.map(inline);
	if (s && typeof s === 'object') {
		const o = s as Json;
		if (typeof o.$ref === 'string') return inline(resolveRef(o.$ref));
		return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, inline(v)]));
	}
	return s;
}

function validator(name: string): z.ZodType {
	const s = doc.components.schemas[name];
	if (!s) throw new Error(`no schema ${name}`);
	return z.fromJSONSchema(inline(s) as Parameters<typeof z.fromJSONSchema>[0]);
}

function expectValid(name: string, value: unknown): void {
	const r = validator(name).safeParse(value);
	expect(r.success, `${name}: ${r.success ? '' : JSON.stringify(r.error.issues)}\n${JSON.stringify(value)}`).toBe(true);
}

describe('docs/openapi.yaml', () => {
	it('is an OpenAPI 3.1 document whose references all resolve', () => {
		expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
		const refs: string[] = [];
		const walk = (v: unknown): void => {
			if (Array.isArray(v)) v.forEach(walk);
			else if (v && typeof v === 'object') {
				for (const [k, x] of Object.entries(v)) {
					if (k === '$ref' && typeof x === 'string') refs.push(x);
					else walk(x);
				}
			}
		};
		walk(doc);
		expect(refs.length).toBeGreaterThan(50);
		for (const ref of refs) expect(resolveRef(ref), ref).toBeDefined();
		// Every schema converts to a validator.
		for (const name of Object.keys(doc.components.schemas)) expect(() => validator(name), name).not.toThrow();
		const ids = [...Object.values(doc.paths), ...Object.values(doc.webhooks)].flatMap((ops) =>
			Object.values(ops)
				.filter((op): op is Json => typeof op === 'object' && op !== null && 'responses' in op)
				.map((op) => op.operationId),
		);
		expect(new Set(ids).size).toBe(ids.length);
		expect(ids.every((id) => typeof id === 'string')).toBe(true);
	});

	it('covers the HTTP API of the contract and the webhooks', () => {
		const ops = Object.entries(doc.paths).flatMap(([p, item]) =>
			Object.keys(item)
				.filter((m) => ['get', 'post', 'delete', 'put', 'patch'].includes(m))
				.map((m) => `${m.toUpperCase()} ${p}`),
		);
		expect(ops.sort()).toEqual(
			[
				'GET /',
				'GET /healthz',
				'GET /api/info',
				'GET /metrics',
				'GET /api/streams',
				'GET /api/streams/{name}',
				'POST /api/streams/{name}/rtp',
				'DELETE /api/streams/{name}/rtp',
				'GET /hls/{name}/index.m3u8',
				'GET /hls/{name}/{file}',
				'GET /watch/{name}',
				'GET /api/admin/streams',
				'GET /api/admin/streams/{name}',
				'DELETE /api/admin/streams/{name}',
				'POST /api/admin/streams/{name}/kick',
				'DELETE /api/admin/viewers/{id}',
			].sort(),
		);
		expect(Object.keys(doc.webhooks).sort()).toEqual(['publish', 'unpublish', 'viewerJoin', 'viewerLeave']);
		// Admin routes declare the bearer token.
		for (const [p, item] of Object.entries(doc.paths)) {
			if (!p.startsWith('/api/admin')) continue;
			for (const op of Object.values(item)) {
				if (typeof op === 'object' && op !== null && 'responses' in op) expect(op.security).toEqual([{ adminToken: [] }]);
			}
		}
	});

	describe('matches what the server answers and sends', () => {
		let server: Server;
		let hook: HookServer;
		const TOKEN = 'openapi-admin-token';
		beforeAll(async () => {
			hook = await HookServer.create();
			server = await startTestServer({
				auth: { adminToken: TOKEN },
				webhooks: { publish: hook.url('/publish'), unpublish: hook.url('/unpublish'), viewerJoin: hook.url('/join'), viewerLeave: hook.url('/leave') },
			});
		});
		afterAll(async () => {
			await server?.close();
			await hook?.close();
			await stopAllFfmpeg();
		});

		it('status, streams, admin answers, errors and webhook payloads', async () => {
			const url = baseUrl(server);
			const get = async (p: string, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> => {
				const res = await fetch(`${url}${p}`, { headers });
				return { status: res.status, body: await res.json() };
			};
			const admin = { Authorization: `Bearer ${TOKEN}` };
			expectValid('Health', (await get('/healthz')).body);
			expectValid('Info', (await get('/api/info')).body);

			await server.registry.authorizePublish({ stream: 'oa1', key: null, protocol: 'rtmp', remoteAddress: '127.0.0.1' });
			const pub = publishFromFfmpeg(server.registry, 'oa1', { width: 320, height: 180 });
			await eventually(() => pub.publication.video && pub.publication.audio && pub.publication.fps, 15_000);
			const stream = server.registry.get('oa1')!;
			const release = stream.addViewer('webrtc', { id: 'oa-viewer', remoteAddress: '192.0.2.5', disconnect: () => release() });
			stream.addViewer('hls', { id: 'oa-hls', remoteAddress: '192.0.2.6' });

			const list = await get('/api/streams');
			expect((list.body as unknown[]).length).toBe(1);
			for (const s of list.body as unknown[]) expectValid('StreamInfo', s);
			expectValid('StreamInfo', (await get('/api/streams/oa1')).body);
			const adminList = await get('/api/admin/streams', admin);
			for (const s of adminList.body as unknown[]) expectValid('AdminStream', s);
			expectValid('AdminStream', (await get('/api/admin/streams/oa1', admin)).body);

			for (const bad of [await get('/api/streams/nope'), await get('/api/admin/streams', {}), await get('/api/streams/bad..name')]) {
				expect(bad.status).toBeGreaterThanOrEqual(400);
				expectValid('Error', bad.body);
			}
			const metrics = await fetch(`${url}/metrics`);
			const documented = doc.paths['/metrics']!.get as { responses: Record<string, { content: Json }> };
			expect(metrics.headers.get('content-type')).toBe(Object.keys(documented.responses['200']!.content)[0]);

			const act = async (method: string, p: string): Promise<unknown> => {
				const res = await fetch(`${url}${p}`, { method, headers: { ...admin, 'Content-Type': 'application/json' }, body: '{"reason":"docs"}' });
				expect(res.status).toBe(200);
				return res.json();
			};
			expectValid('DisconnectViewerResult', await act('DELETE', '/api/admin/viewers/oa-viewer'));
			const conflict = await fetch(`${url}/api/admin/viewers/oa-hls`, { method: 'DELETE', headers: admin });
			expect(conflict.status).toBe(409);
			expectValid('Error', await conflict.json());
			expectValid('KickResult', await act('POST', '/api/admin/streams/oa1/kick'));
			expectValid('CloseStreamResult', await act('DELETE', '/api/admin/streams/oa1'));

			// Plain RTP ingest: the answer, then the end of the session.
			const rtp = await fetch(`${url}/api/streams/oa2/rtp`, { method: 'POST' });
			expect(rtp.status).toBe(201);
			expectValid('RtpAnswer', await rtp.json());
			expect((await fetch(`${url}/api/streams/oa2/rtp`, { method: 'DELETE' })).status).toBe(204);
			const gone = await fetch(`${url}/api/streams/oa2/rtp`, { method: 'DELETE' });
			expect(gone.status).toBe(404);
			expectValid('Error', await gone.json());

			await eventually(() => hook.bodies('/unpublish').length === 2 && hook.bodies('/leave').length === 1);
			expectValid('PublishHookPayload', hook.bodies('/publish')[0]);
			expectValid('UnpublishPayload', hook.bodies('/unpublish')[0]);
			expectValid('ViewerPayload', hook.bodies('/join')[0]);
			expectValid('ViewerPayload', hook.bodies('/leave')[0]);
			// The validators do reject what does not match.
			expect(validator('UnpublishPayload').safeParse({ ...hook.bodies('/unpublish')[0], durationMs: 'long' }).success).toBe(false);
		});
	});
});
