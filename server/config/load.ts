import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { configSchema } from './schema.js';
import type { Config, ConfigInput } from './schema.js';

export class ConfigError extends Error {
	constructor(message: string) {
		super(message);
		this.name = 'ConfigError';
	}
}

const ENV_PREFIX = 'SUBSECOND_';
/** SUBSECOND_* variables that are not config keys. */
const NON_CONFIG_ENV = new Set(['SUBSECOND_CONFIG', 'SUBSECOND_WORKER_DOWNLOAD_TIMEOUT_MS']);
/** Short names the public contract promises, beside the generic ones. */
const ENV_ALIASES: Record<string, string> = {
	SUBSECOND_ANNOUNCED_IP: 'rtc.announcedIp',
	SUBSECOND_RTC_ANNOUNCED_IP: 'rtc.announcedIp',
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function isObject(v: unknown): v is JsonObject {
	return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The defaults: the schema applied to nothing. */
export function defaultConfig(): Config {
	return configSchema.parse({});
}

function snake(key: string): string {
	return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/**
 * Env var name -> config path, for every leaf of the defaults. Records (maps
 * such as auth.publish.keys) and arrays are leaves set as JSON.
 */
export function envVarNames(): Map<string, string[]> {
	const out = new Map<string, string[]>();
	const walk = (obj: JsonObject, prefix: string[]): void => {
		for (const [k, v] of Object.entries(obj)) {
			const p = [...prefix, k];
			const isRecordLeaf = p.join('.') === 'auth.publish.keys' || p.join('.') === 'streams.videoPolicyOverrides';
			if (isObject(v) && !isRecordLeaf) walk(v, p);
			else out.set(ENV_PREFIX + p.map(snake).join('_'), p);
		}
	};
	walk(defaultConfig(), []);
	for (const [alias, p] of Object.entries(ENV_ALIASES)) out.set(alias, p.split('.'));
	return out;
}

function getPath(obj: JsonObject, p: string[]): Json | undefined {
	let cur: Json | undefined = obj;
	for (const k of p) {
		if (!isObject(cur)) return undefined;
		cur = cur[k];
	}
	return cur;
}

function setPath(obj: JsonObject, p: string[], value: Json): void {
	let cur = obj;
	for (const k of p.slice(0, -1)) {
		const next = cur[k];
		if (!isObject(next)) cur[k] = {};
		cur = cur[k] as JsonObject;
	}
	const last = p.at(-1);
	if (last !== undefined) cur[last] = value;
}

/** Parses an env value by the type of the default it replaces. */
function parseEnvValue(name: string, raw: string, defaultValue: Json | undefined): Json {
	const fail = (what: string): never => {
		throw new ConfigError(`invalid config: ${name}=${JSON.stringify(raw)}: ${what}`);
	};
	if (typeof defaultValue === 'number') {
		if (!/^-?\d+(\.\d+)?$/.test(raw.trim())) fail('expected a number');
		return Number(raw);
	}
	if (typeof defaultValue === 'boolean') {
		const v = raw.trim().toLowerCase();
		if (['1', 'true', 'yes', 'on'].includes(v)) return true;
		if (['0', 'false', 'no', 'off'].includes(v)) return false;
		return fail('expected true or false');
	}
	if (Array.isArray(defaultValue) || isObject(defaultValue)) {
		try {
			return JSON.parse(raw) as Json;
		} catch {
			return fail('expected JSON');
		}
	}
	if (defaultValue === null && raw === '') return null;
	return raw;
}

function deepMerge(base: JsonObject, over: JsonObject): JsonObject {
	const out: JsonObject = { ...base };
	for (const [k, v] of Object.entries(over)) {
		const b = out[k];
		out[k] = isObject(b) && isObject(v) && !isRecordPath(k) ? deepMerge(b, v) : v;
	}
	return out;
}

// Maps are replaced whole, so a file's key list is not merged with the defaults'.
function isRecordPath(key: string): boolean {
	return key === 'keys' || key === 'videoPolicyOverrides';
}

function readConfigFile(file: string): JsonObject {
	let text: string;
	try {
		text = fs.readFileSync(file, 'utf8');
	} catch (err) {
		throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
	}
	let parsed: unknown;
	try {
		parsed = /\.json$/i.test(file) ? JSON.parse(text) : YAML.parse(text);
	} catch (err) {
		throw new ConfigError(`config file ${file} is not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
	}
	if (parsed === null || parsed === undefined) return {};
	if (!isObject(parsed)) throw new ConfigError(`config file ${file} must hold an object at the top level`);
	return parsed;
}

function describeIssues(issues: z.core.$ZodIssue[], sources: Map<string, string>): string {
	const lines: string[] = [];
	for (const issue of issues) {
		const base = issue.path.map(String).join('.');
		if (issue.code === 'unrecognized_keys') {
			for (const key of issue.keys) {
				const full = base ? `${base}.${key}` : key;
				const src = sources.get(full) ?? sources.get(base);
				lines.push(`unknown key '${full}'${src ? ` (${src})` : ''}`);
			}
			continue;
		}
		const src = sources.get(base);
		lines.push(`${base || '(root)'}${src ? ` (${src})` : ''}: ${issue.message}`);
	}
	return `invalid config:\n  ${lines.join('\n  ')}`;
}

export interface LoadConfigOptions {
	/** Environment to read SUBSECOND_* from; process.env by default. */
	env?: NodeJS.ProcessEnv;
	/** A config file; SUBSECOND_CONFIG by default. */
	file?: string | null;
	/** Applied after file and env: for tests and embedding. */
	overrides?: ConfigInput;
}

/** Defaults, then the file, then env, then overrides; validated as a whole. */
export function loadConfig(opts: LoadConfigOptions = {}): Config {
	const env = opts.env ?? process.env;
	const sources = new Map<string, string>();
	let merged: JsonObject = {};

	const file = opts.file === undefined ? (env.SUBSECOND_CONFIG ?? null) : opts.file;
	if (file) {
		const fromFile = readConfigFile(path.resolve(file));
		const mark = (obj: JsonObject, prefix: string[]): void => {
			for (const [k, v] of Object.entries(obj)) {
				const p = [...prefix, k];
				sources.set(p.join('.'), `from ${file}`);
				if (isObject(v)) mark(v, p);
			}
		};
		mark(fromFile, []);
		merged = deepMerge(merged, fromFile);
	}

	const names = envVarNames();
	const defaults = defaultConfig() as unknown as JsonObject;
	const unknown: string[] = [];
	for (const [name, raw] of Object.entries(env)) {
		if (!name.startsWith(ENV_PREFIX) || NON_CONFIG_ENV.has(name) || raw === undefined) continue;
		const p = names.get(name);
		if (!p) {
			unknown.push(name);
			continue;
		}
		setPath(merged, p, parseEnvValue(name, raw, getPath(defaults, p)));
		sources.set(p.join('.'), `from env ${name}`);
	}
	if (unknown.length > 0) {
		throw new ConfigError(
			`unknown environment variable${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} ` +
				'(every setting is SUBSECOND_<SECTION>_<KEY>, see docs/configuration.md)',
		);
	}

	if (opts.overrides) merged = deepMerge(merged, opts.overrides);

	const result = configSchema.safeParse(merged);
	if (!result.success) throw new ConfigError(describeIssues(result.error.issues, sources));
	return result.data;
}

const SECRET_KEY = /(secret|token|password|credential)$/i;

/** A copy of the config fit for logs: secrets and stream keys replaced by `***`. */
export function maskSecrets(config: Config): JsonObject {
	const mask = (v: Json, key: string, parent: string): Json => {
		if (parent === 'keys' && typeof v === 'string') return '***';
		if (SECRET_KEY.test(key) && v !== null && v !== undefined) return '***';
		if (Array.isArray(v)) return v.map((x) => mask(x, '', key));
		if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, mask(x, k, key)]));
		return v;
	};
	return mask(config, '', '') as JsonObject;
}
