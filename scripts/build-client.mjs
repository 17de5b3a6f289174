#!/usr/bin/env node
// Bundles the web player (client/web/player) into client/dist with esbuild:
// one script, one stylesheet, no CDN at run time. Runs at install time; the
// server also runs it at start-up when the bundle is missing or stale.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const OUT_DIR = path.join(ROOT, 'client', 'dist');
const SOURCES = [path.join(ROOT, 'client', 'web'), path.join(ROOT, 'client', 'shared')];

function newestMtime(dir) {
	let newest = 0;
	for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
		const p = path.join(dir, entry.name);
		if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p));
		else newest = Math.max(newest, fs.statSync(p).mtimeMs);
	}
	return newest;
}

/** True when the bundle is missing or older than any client source. */
export function playerBundleStale() {
	const js = path.join(OUT_DIR, 'player.js');
	if (!fs.existsSync(js) || !fs.existsSync(path.join(OUT_DIR, 'player.css'))) return true;
	const built = fs.statSync(js).mtimeMs;
	return SOURCES.some((dir) => fs.existsSync(dir) && newestMtime(dir) > built);
}

export async function buildPlayer({ quiet = false } = {}) {
	const started = Date.now();
	fs.mkdirSync(OUT_DIR, { recursive: true });
	await esbuild.build({
		entryPoints: {
			player: path.join(ROOT, 'client', 'web', 'player', 'main.ts'),
		},
		bundle: true,
		format: 'esm',
		target: ['chrome100', 'firefox100', 'safari15'],
		minify: true,
		sourcemap: true,
		outdir: OUT_DIR,
		logLevel: 'warning',
		legalComments: 'linked',
	});
	fs.copyFileSync(path.join(ROOT, 'client', 'web', 'player', 'styles.css'), path.join(OUT_DIR, 'player.css'));
	if (!quiet) console.log(`[subsecond:client] web player bundled in ${Date.now() - started} ms: ${path.relative(ROOT, OUT_DIR)}/`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
	await buildPlayer({ quiet: process.argv.includes('--quiet') });
}
