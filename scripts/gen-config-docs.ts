// Generates docs/configuration.md and config.example.yaml from the config schema
// (server/config/schema.ts): every key with its env var, type, default and the
// description written above it in the schema. test/ops/config-docs.test.ts checks
// that the committed files match.
//
// Usage: node --import tsx scripts/gen-config-docs.ts [--write | --check]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import YAML from 'yaml';
import { z } from 'zod';
import { defaultConfig, envVarNames } from '../server/config/load.js';
import { configSchema } from '../server/config/schema.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SCHEMA_FILE = path.join(ROOT, 'server', 'config', 'schema.ts');
export const DOCS_FILE = path.join(ROOT, 'docs', 'configuration.md');
export const EXAMPLE_FILE = path.join(ROOT, 'config.example.yaml');

/** Keys whose default depends on the machine, shown symbolically. */
const TMPDIR_TOKEN = '<tmpdir>';

/**
 * Descriptions for keys the schema has no comment for (self-explanatory
 * there, but a reader of the docs deserves a sentence). A comment in the
 * schema wins over these.
 */
const EXTRA: Record<string, string> = {
	http: 'The HTTP(S) server: API, HLS, metrics, player and the socket.io signaling.',
	'http.host': 'Address the HTTP server listens on.',
	'http.port': 'HTTP(S) port; 0 picks a free one (reported by GET /api/info).',
	'http.tls.cert': 'PEM certificate (chain) file. Both cert and key set turn TLS on.',
	'http.tls.key': 'PEM private key file of the certificate.',
	rtmp: 'RTMP ingest (OBS, ffmpeg, GStreamer).',
	'rtmp.enabled': 'Run the RTMP listener.',
	'rtmp.handshakeTimeoutMs': 'Time a new connection has to complete the RTMP handshake.',
	'rtmp.maxConnections': 'RTMP connections accepted at once; more are refused.',
	'rtmp.host': 'Address the RTMP server listens on.',
	'rtmp.port': 'RTMP port; 0 picks a free one.',
	'rtmp.rtmps.port': 'RTMPS (RTMP over TLS) port.',
	'rtmp.rtmps.cert': 'PEM certificate (chain) file for RTMPS; RTMPS is off while cert and key are null.',
	'rtmp.rtmps.key': 'PEM private key file for RTMPS.',
	rtpIngest: 'Plain RTP ingest: POST /api/streams/NAME/rtp (see docs/rtp-ingest.md).',
	rtc: 'WebRTC delivery through mediasoup workers.',
	'rtc.listenIp': 'Address the WebRTC ports listen on.',
	'rtc.logLevel': 'mediasoup worker log level.',
	'rtc.iceServers': 'TURN/STUN servers handed to clients in the join answer, as RTCIceServer objects (JSON in the env var).',
	auth: 'Publish keys, viewer tokens and the admin token.',
	'auth.viewer.issuer': 'Required `iss` claim of viewer tokens; null: not checked.',
	'auth.viewer.audience': 'Required `aud` claim of viewer tokens; null: not checked.',
	streams: 'Stream limits and the video policy of the ingest bridge.',
	'streams.transcode.preset': 'x264 preset of the transcoder: faster presets cost less CPU and give larger or blurrier output.',
	'streams.maxViewersPerStream': 'WebRTC viewers one stream accepts.',
	'streams.maxStreams': 'Live streams the server carries at once.',
	signaling: 'socket.io signaling limits.',
	'signaling.maxTransportsPerConnection': 'WebRTC transports one socket.io connection may create.',
	hls: 'HLS and Low-Latency HLS output.',
	'hls.enabled': 'Package every live stream as HLS.',
	webhooks: 'HTTP callbacks to the operator’s own service (see docs/deploy.md).',
	'webhooks.unpublish': 'Notified (POST) when a publication ends.',
	'webhooks.viewerJoin': 'Notified (POST) when a listed viewer starts watching.',
	'webhooks.viewerLeave': 'Notified (POST) when a listed viewer stops watching.',
	'webhooks.timeoutMs': 'Timeout of one webhook call (headers and body).',
	metrics: 'Prometheus metrics at GET /metrics.',
	log: 'Logging (pino).',
	'log.level': 'Lowest level logged.',
};

type JsonSchema = {
	type?: string;
	enum?: unknown[];
	anyOf?: JsonSchema[];
	minimum?: number;
	maximum?: number;
	format?: string;
	pattern?: string;
	items?: JsonSchema;
	properties?: Record<string, JsonSchema>;
	additionalProperties?: JsonSchema | boolean;
	minLength?: number;
};

// ---- descriptions from the schema's comments ----

function jsDocOf(node: ts.Node, text: string): string | null {
	const ranges = ts.getLeadingCommentRanges(text, node.getFullStart()) ?? [];
	const docs = ranges.map((r) => text.slice(r.pos, r.end)).filter((c) => c.startsWith('/**'));
	const last = docs.at(-1);
	if (!last) return null;
	return last
		.replace(/^\/\*\*/, '')
		.replace(/\*\/$/, '')
		.split('\n')
		.map((l) => l.replace(/^\s*\*\s?/, '').trim())
		.filter(Boolean)
		.join(' ');
}

/** Config path (dot-joined) -> the comment written above its key in schema.ts. */
export function schemaComments(file = SCHEMA_FILE): Map<string, string> {
	const text = fs.readFileSync(file, 'utf8');
	const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
	const vars = new Map<string, ts.Expression>();
	sf.forEachChild(function visit(n) {
		if (ts.isVariableDeclaration(n) && ts.isIdentifier(n.name) && n.initializer) vars.set(n.name.text, n.initializer);
		n.forEachChild(visit);
	});
	/** The object literal of the outermost z.strictObject(...) in an expression. */
	const objectOf = (expr: ts.Expression, seen = new Set<string>()): ts.ObjectLiteralExpression | null => {
		if (ts.isIdentifier(expr)) {
			const init = vars.get(expr.text);
			if (!init || seen.has(expr.text)) return null;
			seen.add(expr.text);
			return objectOf(init, seen);
		}
		let found: ts.ObjectLiteralExpression | null = null;
		const search = (n: ts.Node): void => {
			if (found) return;
			if (ts.isCallExpression(n) && /(^|\.)(strictObject|object)$/.test(n.expression.getText(sf))) {
				const arg = n.arguments[0];
				if (arg && ts.isObjectLiteralExpression(arg)) {
					found = arg;
					return;
				}
			}
			if (ts.isIdentifier(n) && n !== expr && vars.has(n.text) && !seen.has(n.text)) {
				const inner = objectOf(n, new Set(seen));
				if (inner) {
					found = inner;
					return;
				}
			}
			n.forEachChild(search);
		};
		search(expr);
		return found;
	};
	const out = new Map<string, string>();
	const walk = (obj: ts.ObjectLiteralExpression, prefix: string[]): void => {
		for (const prop of obj.properties) {
			if (!ts.isPropertyAssignment(prop) && !ts.isShorthandPropertyAssignment(prop)) continue;
			const name = prop.name.getText(sf).replace(/^['"]|['"]$/g, '');
			const p = [...prefix, name];
			const doc = jsDocOf(prop, text);
			if (doc) out.set(p.join('.'), doc);
			const value = ts.isPropertyAssignment(prop) ? prop.initializer : prop.name;
			// Lists of objects (iceServers) are documented as one key.
			if (/^z\.array\(/.test(value.getText(sf))) continue;
			const inner = objectOf(value);
			if (inner) walk(inner, p);
		}
	};
	const root = vars.get('configSchema');
	const rootObj = root ? objectOf(root) : null;
	if (!rootObj) throw new Error(`cannot find configSchema's object in ${file}`);
	walk(rootObj, []);
	return out;
}

// ---- types, defaults, env vars ----

function rangeText(s: JsonSchema, what: string): string {
	const max = s.maximum !== undefined && s.maximum < Number.MAX_SAFE_INTEGER ? s.maximum : undefined;
	if (s.minimum !== undefined && max !== undefined) return `${what} ${s.minimum}–${max}`;
	if (s.minimum !== undefined) return `${what} ≥ ${s.minimum}`;
	if (max !== undefined) return `${what} ≤ ${max}`;
	return what;
}

function typeText(s: JsonSchema): string {
	if (s.enum) return s.enum.map((v) => `\`${String(v)}\``).join(', ');
	if (s.anyOf) return s.anyOf.map(typeText).join(' or ');
	switch (s.type ?? 'unknown') {
		case 'integer':
			return rangeText(s, 'integer');
		case 'number':
			return rangeText(s, 'number');
		case 'boolean':
			return 'boolean';
		case 'null':
			return 'null';
		case 'string':
			if (s.format === 'uri') return 'URL';
			if (s.pattern) return `string matching \`${s.pattern}\``;
			return 'string';
		case 'array':
			return s.items?.type === 'object' ? 'list of objects' : `list of ${s.items ? typeText(s.items) : 'values'}`;
		case 'object': {
			const v = typeof s.additionalProperties === 'object' ? typeText(s.additionalProperties) : 'value';
			return `map of name to ${v}`;
		}
		default:
			return 'value';
	}
}

function schemaAt(root: JsonSchema, p: string[]): JsonSchema {
	let cur: JsonSchema | undefined = root;
	for (const k of p) cur = cur?.properties?.[k];
	if (!cur) throw new Error(`no schema for ${p.join('.')}`);
	return cur;
}

function valueAt(obj: unknown, p: string[]): unknown {
	let cur = obj;
	for (const k of p) cur = (cur as Record<string, unknown>)[k];
	return cur;
}

/** Replaces the machine's temp folder in a default with a placeholder. */
function portable(v: unknown): unknown {
	if (typeof v === 'string' && v.startsWith(os.tmpdir() + path.sep)) return TMPDIR_TOKEN + v.slice(os.tmpdir().length);
	return v;
}

export interface ConfigKeyDoc {
	path: string[];
	env: string[];
	type: string;
	default: unknown;
	/** True when the default depends on the machine (left commented out in the example). */
	machineDependent: boolean;
	description: string | null;
}

/** Every config key, in schema order, with what the docs say about it. */
export function configKeys(): {
	keys: ConfigKeyDoc[];
	sections: Map<string, string | null>;
	/** The description of any path, objects included. */
	describe: (path: string) => string | null;
} {
	const json = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
	const comments = schemaComments();
	const describe = (p: string): string | null => {
		const own = comments.get(p) ?? EXTRA[p];
		if (own) return own;
		// `fooMax` is often documented together with the `fooMin` above it.
		const min = p.replace(/Max$/, 'Min');
		if (min !== p && (comments.get(min) ?? EXTRA[min])) return `Upper end of the range; see \`${min}\`.`;
		return null;
	};
	const byPath = new Map<string, string[]>();
	for (const [env, p] of envVarNames()) {
		const k = p.join('.');
		byPath.set(k, [...(byPath.get(k) ?? []), env]);
	}
	const defaults = defaultConfig();
	const keys: ConfigKeyDoc[] = [];
	const sections = new Map<string, string | null>();
	// envVarNames() walks the defaults in schema order, aliases last; keep schema order.
	const seen = new Set<string>();
	for (const p of envVarNames().values()) {
		const k = p.join('.');
		if (seen.has(k)) continue;
		seen.add(k);
		const section = p.length > 1 ? (p[0] ?? '') : '';
		if (!sections.has(section)) sections.set(section, section ? describe(section) : null);
		const value = valueAt(defaults, p);
		keys.push({
			path: p,
			// The generic name first, then short aliases.
			env: (byPath.get(k) ?? []).sort((a, b) => b.length - a.length),
			type: typeText(schemaAt(json, p)),
			default: portable(value),
			machineDependent: portable(value) !== value,
			description: describe(k),
		});
	}
	return { keys, sections, describe };
}

// ---- output ----

function mdCell(s: string): string {
	return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function defaultText(v: unknown): string {
	if (v === null) return '`null`';
	if (typeof v === 'string') return `\`${v}\``;
	return `\`${JSON.stringify(v)}\``;
}

export function renderMarkdown(): string {
	const { keys, sections } = configKeys();
	const out: string[] = [
		'# Configuration',
		'',
		'<!-- Generated from server/config/schema.ts by scripts/gen-config-docs.ts: do not edit by hand, run `npm run docs:config`. -->',
		'',
		'Every setting has a default. A config file and `SUBSECOND_*` environment variables override them, in this order',
		'(later wins): defaults, the file, the environment. The result is validated as a whole before anything starts.',
		'',
		'- **Config file**: YAML or JSON (by extension), named by `SUBSECOND_CONFIG=/path/to/config.yaml`. It may hold any',
		'  subset of the keys below, nested as shown in [`config.example.yaml`](../config.example.yaml), which spells out',
		'  every default.',
		'- **Environment**: `SUBSECOND_` + the key path in upper snake case, e.g. `http.port` is `SUBSECOND_HTTP_PORT` and',
		'  `auth.adminToken` is `SUBSECOND_AUTH_ADMIN_TOKEN`. Numbers and booleans (`true`/`false`, `1`/`0`, `yes`/`no`,',
		'  `on`/`off`) are parsed; an empty value sets a nullable key to `null`; lists and maps are JSON, e.g.',
		'  `SUBSECOND_AUTH_PUBLISH_KEYS=\'{"cam1":"s3cret"}\'`.',
		'- **Unknown keys are errors**, in the file and in the environment (any `SUBSECOND_*` variable that is not listed',
		'  here, except `SUBSECOND_CONFIG`), and the message names the key and where it came from.',
		'- The effective config is logged at start-up with secrets (`*Secret`, `*Token`, passwords, stream keys) masked.',
		`- \`${TMPDIR_TOKEN}\` stands for the system temp folder (\`os.tmpdir()\`, usually \`/tmp\`).`,
		'- Not config keys: `SUBSECOND_CONFIG` (the config file) and `SUBSECOND_WORKER_DOWNLOAD_TIMEOUT_MS` (read by',
		'  `npm install` when it fetches the mediasoup worker).',
		'',
	];
	for (const [section, intro] of sections) {
		const rows = keys.filter((k) => (section ? k.path[0] === section && k.path.length > 1 : k.path.length === 1));
		out.push(`## ${section || 'Top level'}`, '');
		if (intro) out.push(intro, '');
		out.push('| Key | Env var | Type | Default | Description |', '| --- | --- | --- | --- | --- |');
		for (const k of rows) {
			out.push(
				`| \`${k.path.join('.')}\` | ${k.env.map((e) => `\`${e}\``).join('<br>')} | ${mdCell(k.type)} | ${mdCell(
					defaultText(k.default),
				)} | ${mdCell(k.description ?? '')} |`,
			);
		}
		out.push('');
	}
	return out.join('\n');
}

function wrap(text: string, width: number): string[] {
	const lines: string[] = [];
	let line = '';
	for (const word of text.split(/\s+/)) {
		if (line && line.length + 1 + word.length > width) {
			lines.push(line);
			line = word;
		} else {
			line = line ? `${line} ${word}` : word;
		}
	}
	if (line) lines.push(line);
	return lines;
}

function yamlScalar(v: unknown): string {
	if (v !== null && typeof v === 'object') return JSON.stringify(v);
	return YAML.stringify(v).trimEnd();
}

export function renderExample(): string {
	const { keys, sections, describe } = configKeys();
	const out: string[] = [
		'# subsecond configuration: every key with its default.',
		'#',
		'# Generated from server/config/schema.ts by scripts/gen-config-docs.ts (run `npm run docs:config`);',
		'# docs/configuration.md describes each key and its environment variable. Copy what you need into',
		'# your own file (keys you leave out keep their defaults) and point SUBSECOND_CONFIG at it.',
	];
	for (const [section, intro] of sections) {
		const rows = keys.filter((k) => (section ? k.path[0] === section && k.path.length > 1 : k.path.length === 1));
		out.push('');
		if (intro) for (const l of wrap(intro, 100)) out.push(`# ${l}`);
		if (section) out.push(`${section}:`);
		let open: string[] = section ? [section] : [];
		for (const k of rows) {
			// Open the nested objects this key lives in.
			const parents = k.path.slice(0, -1);
			let common = 0;
			while (common < open.length && common < parents.length && open[common] === parents[common]) common++;
			for (let i = common; i < parents.length; i++) {
				const pad = '  '.repeat(i);
				const doc = describe(parents.slice(0, i + 1).join('.'));
				if (doc) for (const l of wrap(doc, 100 - pad.length - 2)) out.push(`${pad}# ${l}`);
				out.push(`${pad}${parents[i]}:`);
			}
			open = parents;
			const pad = '  '.repeat(parents.length);
			const leaf = k.path.at(-1) ?? '';
			if (k.description) for (const l of wrap(k.description, 100 - pad.length - 2)) out.push(`${pad}# ${l}`);
			out.push(`${pad}# env: ${k.env.join(', ')}`);
			if (k.machineDependent) {
				out.push(`${pad}# ${leaf}: ${yamlScalar(k.default)}   (default; ${TMPDIR_TOKEN} is the system temp folder)`);
			} else {
				out.push(`${pad}${leaf}: ${yamlScalar(k.default)}`);
			}
		}
	}
	return `${out.join('\n')}\n`;
}

function main(): void {
	const mode = process.argv[2] ?? '--check';
	const files: [string, string][] = [
		[DOCS_FILE, renderMarkdown()],
		[EXAMPLE_FILE, renderExample()],
	];
	const missing = configKeys().keys.filter((k) => !k.description);
	if (missing.length > 0) {
		console.error(`keys without a description (add a /** comment */ above them in server/config/schema.ts):`);
		for (const k of missing) console.error(`  ${k.path.join('.')}`);
		process.exitCode = 1;
	}
	for (const [file, text] of files) {
		const current = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
		if (mode === '--write') {
			if (current !== text) fs.writeFileSync(file, text);
			console.log(`${current === text ? 'unchanged' : 'wrote'} ${path.relative(ROOT, file)}`);
		} else if (current !== text) {
			console.error(`${path.relative(ROOT, file)} is out of date: run \`npm run docs:config\``);
			process.exitCode = 1;
		}
	}
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
