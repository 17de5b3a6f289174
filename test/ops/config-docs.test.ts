import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { defaultConfig, envVarNames, loadConfig } from '../../server/config/load.js';
import {
	DOCS_FILE,
	EXAMPLE_FILE,
	configKeys,
	renderExample,
	renderMarkdown,
	schemaComments,
} from '../../scripts/gen-config-docs.js';

describe('configuration docs', () => {
	it('docs/configuration.md is what the generator makes of the schema (run `npm run docs:config` if not)', () => {
		expect(fs.readFileSync(DOCS_FILE, 'utf8')).toBe(renderMarkdown());
	});

	it('config.example.yaml is what the generator makes of the schema (run `npm run docs:config` if not)', () => {
		expect(fs.readFileSync(EXAMPLE_FILE, 'utf8')).toBe(renderExample());
	});

	it('config.example.yaml loads, and spells out exactly the defaults', () => {
		const loaded = loadConfig({ file: EXAMPLE_FILE, env: {} });
		expect(loaded).toEqual(defaultConfig());
		// Every key is written out (the machine-dependent ones as a comment).
		const text = fs.readFileSync(EXAMPLE_FILE, 'utf8');
		const parsed = YAML.parse(text) as Record<string, unknown>;
		for (const k of configKeys().keys) {
			let cur: unknown = parsed;
			for (const part of k.path) cur = (cur as Record<string, unknown> | undefined)?.[part];
			if (k.machineDependent) expect(text).toContain(`# ${k.path.at(-1)}: `);
			else expect(cur, k.path.join('.')).toEqual(k.default);
		}
	});

	it('documents every key and every env var, each with a description', () => {
		const md = fs.readFileSync(DOCS_FILE, 'utf8');
		const { keys } = configKeys();
		const missing = keys.filter((k) => !k.description).map((k) => k.path.join('.'));
		expect(missing, 'add a /** comment */ above these keys in server/config/schema.ts').toEqual([]);
		for (const k of keys) expect(md).toContain(`| \`${k.path.join('.')}\` |`);
		for (const env of envVarNames().keys()) expect(md).toContain(`\`${env}\``);
		// Each documented env var really sets its key.
		for (const k of keys.filter((x) => typeof x.default === 'number' && !x.machineDependent)) {
			for (const env of k.env) {
				const cfg = loadConfig({ env: { [env]: String(k.default) }, file: null }) as unknown as Record<string, unknown>;
				let cur: unknown = cfg;
				for (const part of k.path) cur = (cur as Record<string, unknown>)[part];
				expect(cur, env).toBe(k.default);
			}
		}
	});

	it('reads descriptions from the comments in the schema source', () => {
		const comments = schemaComments();
		expect(comments.get('http.corsOrigin')).toBe('Allowed CORS origins for the API and HLS; `*` for any.');
		expect(comments.get('rtc.port')).toMatch(/^First WebRTC port\. Worker i of the pool listens on port \+ i/);
		expect(comments.get('metrics.requireAdminToken')).toMatch(/admin token/);
		expect(comments.get('ffmpegPath')).toMatch(/ffmpeg binary/);
	});
});
