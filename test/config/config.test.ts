import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, defaultConfig, envVarNames, loadConfig, maskSecrets } from '../../server/config/index.js';

function tmpFile(name: string, text: string): string {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'subsecond-config-'));
	const file = path.join(dir, name);
	fs.writeFileSync(file, text);
	return file;
}

function errorOf(fn: () => unknown): string {
	try {
		fn();
	} catch (err) {
		expect(err).toBeInstanceOf(ConfigError);
		return (err as Error).message;
	}
	throw new Error('expected a ConfigError');
}

describe('config', () => {
	it('has the contract defaults', () => {
		const c = defaultConfig();
		expect(c.http.port).toBe(8080);
		expect(c.rtmp.port).toBe(1935);
		expect(c.rtc.port).toBe(40000);
		expect(c.rtmp.app).toBe('live');
	});

	it('layers file, then env, then overrides', () => {
		const file = tmpFile('c.yaml', 'http:\n  port: 9000\nrtmp:\n  port: 2000\n');
		const c = loadConfig({ file, env: { SUBSECOND_RTMP_PORT: '3000' }, overrides: { rtc: { port: 41000 } } });
		expect(c.http.port).toBe(9000);
		expect(c.rtmp.port).toBe(3000);
		expect(c.rtc.port).toBe(41000);
	});

	it('reads JSON files too, and SUBSECOND_CONFIG', () => {
		const file = tmpFile('c.json', JSON.stringify({ hls: { windowSegments: 8 } }));
		expect(loadConfig({ env: { SUBSECOND_CONFIG: file } }).hls.windowSegments).toBe(8);
	});

	it('maps the contract env vars', () => {
		const c = loadConfig({
			file: null,
			env: {
				SUBSECOND_HTTP_PORT: '0',
				SUBSECOND_RTMP_PORT: '0',
				SUBSECOND_RTC_PORT: '0',
				SUBSECOND_ANNOUNCED_IP: '203.0.113.7',
				SUBSECOND_AUTH_PUBLISH_KEYS: '{"cam1":"s3cret"}',
				SUBSECOND_AUTH_VIEWER_REQUIRED: 'true',
				SUBSECOND_AUTH_VIEWER_JWT_SECRET: 'jwt-secret',
			},
		});
		expect([c.http.port, c.rtmp.port, c.rtc.port]).toEqual([0, 0, 0]);
		expect(c.rtc.announcedIp).toBe('203.0.113.7');
		expect(c.auth.publish.keys).toEqual({ cam1: 's3cret' });
		expect(c.auth.viewer.required).toBe(true);
		expect(envVarNames().get('SUBSECOND_STREAMS_TRANSCODE_PRESET')).toEqual(['streams', 'transcode', 'preset']);
	});

	it.each([
		[{ http: { port: 70000 } }, 'http.port'],
		[{ http: { prot: 80 } }, "unknown key 'http.prot'"],
		[{ nonsense: true }, "unknown key 'nonsense'"],
		[{ rtmp: { app: 'a/b' } }, 'rtmp.app'],
		[{ streams: { videoPolicy: 'sometimes' } }, 'streams.videoPolicy'],
		[{ hls: { partTargetMs: 5 } }, 'hls.partTargetMs'],
		[{ http: { tls: { cert: '/x.pem' } } }, 'http.tls'],
		[{ auth: { viewer: { required: true } } }, 'auth.viewer'],
		[{ webhooks: { publish: 'not a url' } }, 'webhooks.publish'],
		[{ rtc: { workers: -1 } }, 'rtc.workers'],
	])('names the key in %j', (overrides, expected) => {
		expect(errorOf(() => loadConfig({ file: null, env: {}, overrides: overrides as never }))).toContain(expected);
	});

	it('names the file a bad value came from', () => {
		const file = tmpFile('bad.yaml', 'rtmp:\n  maxConnections: "lots"\n  colour: blue\n');
		const msg = errorOf(() => loadConfig({ file, env: {} }));
		expect(msg).toContain('rtmp.maxConnections');
		expect(msg).toContain(file);
		expect(msg).toContain("unknown key 'rtmp.colour'");
	});

	it('names the env var of a bad or unknown value', () => {
		expect(errorOf(() => loadConfig({ file: null, env: { SUBSECOND_HTTP_PORT: 'eighty' } }))).toContain('SUBSECOND_HTTP_PORT');
		expect(errorOf(() => loadConfig({ file: null, env: { SUBSECOND_HTTP_PROT: '80' } }))).toContain('SUBSECOND_HTTP_PROT');
		expect(errorOf(() => loadConfig({ file: null, env: { SUBSECOND_RTMP_ENABLED: 'maybe' } }))).toContain('SUBSECOND_RTMP_ENABLED');
		expect(errorOf(() => loadConfig({ file: null, env: { SUBSECOND_AUTH_PUBLISH_KEYS: '{oops' } }))).toContain(
			'SUBSECOND_AUTH_PUBLISH_KEYS',
		);
		expect(errorOf(() => loadConfig({ file: null, env: { SUBSECOND_RTC_PORT: '99999' } }))).toMatch(
			/rtc\.port \(from env SUBSECOND_RTC_PORT\)/,
		);
	});

	it('reports unreadable and malformed files clearly', () => {
		expect(errorOf(() => loadConfig({ file: '/nonexistent/subsecond.yaml', env: {} }))).toContain('/nonexistent/subsecond.yaml');
		expect(errorOf(() => loadConfig({ file: tmpFile('x.yaml', 'http: [1, 2'), env: {} }))).toContain('not valid YAML');
		expect(errorOf(() => loadConfig({ file: tmpFile('x.json', '{"http":'), env: {} }))).toContain('not valid JSON');
		expect(errorOf(() => loadConfig({ file: tmpFile('x.yaml', '- 1\n- 2\n'), env: {} }))).toContain('object at the top level');
	});

	it('masks secrets for logs', () => {
		const c = loadConfig({
			file: null,
			env: {},
			overrides: {
				auth: { publish: { keys: { cam: 'k1' }, hmacSecret: 'h' }, viewer: { jwtSecret: 'j' }, adminToken: 't' },
				rtc: { iceServers: [{ urls: 'turn:x', username: 'u', credential: 'c' }] },
			},
		});
		const text = JSON.stringify(maskSecrets(c));
		for (const secret of ['"k1"', '"h"', '"j"', '"t"', '"c"']) expect(text).not.toContain(secret);
		expect(text).toContain('"cam":"***"');
		// The real config is untouched.
		expect(c.auth.publish.keys.cam).toBe('k1');
	});
});
