import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { defaultConfig, envVarNames, loadConfig } from '../../server/config/load.js';

// No Docker engine runs here: the compose file and the Dockerfile are checked
// statically against the config schema and the server's defaults.

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const compose = YAML.parse(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as {
	services: Record<string, Service>;
	volumes?: Record<string, unknown>;
};
const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');

interface Service {
	build?: { context: string; target?: string };
	image?: string;
	environment?: Record<string, string>;
	ports?: string[];
	volumes?: string[];
	profiles?: string[];
	network_mode?: string;
}

/** Env vars that are not config keys but that the server or npm install reads. */
const NON_CONFIG = new Set(['SUBSECOND_CONFIG', 'SUBSECOND_WORKER_DOWNLOAD_TIMEOUT_MS']);

/** Compose interpolation the way `docker compose` does it, with `vars` as the .env. */
function interpolate(value: string, vars: Record<string, string>): string {
	return value.replace(/\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}/g, (_m, name: string, op: string | undefined, arg: string) => {
		const v = vars[name];
		const unset = op?.startsWith(':') ? !v : v === undefined;
		if (!unset) return v ?? '';
		if (op?.endsWith('?')) throw new Error(`${name} is required: ${arg}`);
		return op?.endsWith('-') ? arg : '';
	});
}

interface PortMapping {
	hostIp: string | null;
	host: [number, number];
	container: [number, number];
	protocol: 'tcp' | 'udp';
}

function parsePort(spec: string): PortMapping {
	const m = /^(?:([\d.]+):)?(\d+)(?:-(\d+))?:(\d+)(?:-(\d+))?(?:\/(tcp|udp))?$/.exec(spec);
	if (!m) throw new Error(`unsupported port syntax: ${spec}`);
	const h1 = Number(m[2]);
	const c1 = Number(m[4]);
	return {
		hostIp: m[1] ?? null,
		host: [h1, Number(m[3] ?? h1)],
		container: [c1, Number(m[5] ?? c1)],
		protocol: (m[6] as 'tcp' | 'udp' | undefined) ?? 'tcp',
	};
}

const server = compose.services.subsecond!;
const env = server.environment ?? {};
const dotenv = { SUBSECOND_ANNOUNCED_IP: '203.0.113.10' };
const resolvedEnv = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(String(v), dotenv)]));

describe('docker-compose.yml', () => {
	it('builds the server from a target the Dockerfile defines, on node:20-bookworm-slim', () => {
		const stages = [...dockerfile.matchAll(/^FROM\s+(\S+)\s+AS\s+(\S+)\s*$/gim)].map((m) => ({ image: m[1], name: m[2] }));
		expect(stages.map((s) => s.name)).toEqual(['build', 'runtime']);
		expect(server.build?.context).toBe('.');
		expect(stages.map((s) => s.name)).toContain(server.build?.target);
		expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
		expect(stages.every((s) => s.image === '${NODE_IMAGE}')).toBe(true);
		// The build stage runs npm ci and provisions the worker; the runtime stage has ffmpeg.
		const [buildStage, runtimeStage] = dockerfile.split(/^FROM .* AS runtime$/m);
		expect(buildStage).toMatch(/npm ci\b/);
		expect(buildStage).toMatch(/node scripts\/provision-worker\.mjs/);
		expect(runtimeStage).toMatch(/apt-get install[^\n]*\n?[^\n]*\bffmpeg\b/);
		expect(runtimeStage).toMatch(/^CMD \["node", "--import", "tsx", "server\/main\.ts"\]$/m);
		// What the build copies must exist.
		for (const m of dockerfile.matchAll(/^COPY (?!--from)(?:--\S+ )*(.+) \S+$/gm)) {
			for (const src of m[1]!.split(/\s+/)) {
				if (src !== '.') expect(fs.existsSync(path.join(ROOT, src)), src).toBe(true);
			}
		}
	});

	it('sets only real config env vars, and values the config accepts', () => {
		const known = envVarNames();
		const dockerfileEnv = [...dockerfile.matchAll(/\b(SUBSECOND_[A-Z0-9_]+)=/g)].map((m) => m[1]!);
		const commented = [...fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8').matchAll(/#\s*(SUBSECOND_[A-Z0-9_]+):/g)].map(
			(m) => m[1]!,
		);
		for (const name of [...Object.keys(env), ...dockerfileEnv, ...commented]) {
			expect(known.has(name) || NON_CONFIG.has(name), `${name} is not a config env var`).toBe(true);
		}
		// The announced IP is required, with a message that says what to set.
		expect(() => interpolate(String(env.SUBSECOND_ANNOUNCED_IP), {})).toThrow(/SUBSECOND_ANNOUNCED_IP is required/);
		// With only the announced IP set, the server's config loads from this environment.
		const config = loadConfig({ env: resolvedEnv, file: null });
		expect(config.rtc.announcedIp).toBe('203.0.113.10');
		expect(config.auth.adminToken).toBeNull();
		expect(config.webhooks.publish).toBeNull();
		expect(config.rtc.iceServers).toEqual([]);
		// And the optional ones work when set.
		const set = loadConfig({
			env: Object.fromEntries(
				Object.entries(env).map(([k, v]) => [
					k,
					interpolate(String(v), {
						...dotenv,
						SUBSECOND_AUTH_ADMIN_TOKEN: 'tok',
						SUBSECOND_WEBHOOKS_PUBLISH: 'https://hooks.example.com/publish',
						SUBSECOND_RTC_ICE_SERVERS: '[{"urls":"turn:203.0.113.10:3478","username":"u","credential":"p"}]',
					}),
				]),
			),
			file: null,
		});
		expect(set.auth.adminToken).toBe('tok');
		expect(set.webhooks.publish).toBe('https://hooks.example.com/publish');
		expect(set.rtc.iceServers).toHaveLength(1);
	});

	it('publishes the HTTP, RTMP and per-worker WebRTC ports (UDP and TCP) the config uses', () => {
		const config = loadConfig({ env: resolvedEnv, file: null });
		const defaults = defaultConfig();
		// The compose file keeps the contract's default ports.
		expect(config.http.port).toBe(defaults.http.port);
		expect(config.rtmp.port).toBe(defaults.rtmp.port);
		expect(config.rtc.port).toBe(defaults.rtc.port);

		const ports = (server.ports ?? []).map(parsePort);
		const single = (p: number, protocol: 'tcp' | 'udp'): PortMapping | undefined =>
			ports.find((m) => m.protocol === protocol && m.container[0] <= p && p <= m.container[1]);
		expect(single(config.http.port, 'tcp')).toBeDefined();
		expect(single(config.rtmp.port, 'tcp')).toBeDefined();

		// A fixed number of workers, one port each, UDP and TCP, host port = container port
		// (ICE candidates carry the port the server listens on).
		expect(config.rtc.workers).toBeGreaterThan(0);
		for (const protocol of ['udp', 'tcp'] as const) {
			const rtc = ports.filter((m) => m.protocol === protocol && m.container[0] >= config.rtc.port && m.container[0] < config.rtc.port + 100);
			expect(rtc, `${protocol} RTC mapping`).toHaveLength(1);
			const [m] = rtc;
			expect(m!.container).toEqual([config.rtc.port, config.rtc.port + config.rtc.workers - 1]);
			expect(m!.host).toEqual(m!.container);
		}
		for (const m of ports) expect(m.host[1] - m.host[0]).toBe(m.container[1] - m.container[0]);
		// The Dockerfile documents the same ports.
		for (const p of [`${config.http.port}/tcp`, `${config.rtmp.port}/tcp`, `${config.rtc.port}/udp`, `${config.rtc.port}/tcp`]) {
			expect(dockerfile).toMatch(new RegExp(`^EXPOSE .*\\b${p.replace('/', '\\/')}\\b`, 'm'));
		}
	});

	it('keeps HLS on a named volume at SUBSECOND_HLS_DIR', () => {
		const config = loadConfig({ env: resolvedEnv, file: null });
		const mounts = (server.volumes ?? []).map((v) => v.split(':'));
		const hls = mounts.find(([, target]) => target === config.hls.dir);
		expect(hls, `a volume mounted at ${config.hls.dir}`).toBeDefined();
		expect(compose.volumes).toHaveProperty(hls![0]!);
		expect(dockerfile).toContain(`SUBSECOND_HLS_DIR=${config.hls.dir}`);
		expect(dockerfile).toMatch(new RegExp(`^VOLUME \\["${config.hls.dir}"\\]$`, 'm'));
	});

	it('puts redis and coturn behind profiles, the server in none', () => {
		expect(server.profiles).toBeUndefined();
		expect(compose.services.redis?.profiles).toEqual(['redis']);
		expect(compose.services.coturn?.profiles).toEqual(['turn']);
		// Every other service is optional.
		for (const [name, s] of Object.entries(compose.services)) {
			if (name !== 'subsecond') expect(s.profiles?.length, name).toBeGreaterThan(0);
		}
		// Redis is not exposed beyond the host.
		for (const p of (compose.services.redis?.ports ?? []).map(parsePort)) expect(p.hostIp).toBe('127.0.0.1');
		// coturn advertises the same address the server announces.
		const coturnArgs = (compose.services.coturn as { command?: string[] }).command ?? [];
		expect(coturnArgs.map((a) => interpolate(a, dotenv))).toContain('--external-ip=203.0.113.10');
	});
});
