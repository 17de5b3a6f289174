import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Router } from 'express';
import type { Response } from 'express';
import type { Logger } from '../common/logger.js';
import { assertStreamName } from '../core/stream.js';

interface BuildModule {
	OUT_DIR: string;
	playerBundleStale(): boolean;
	buildPlayer(opts?: { quiet?: boolean }): Promise<void>;
}

const SHELL = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="color-scheme" content="dark">
<title>subsecond</title>
<link rel="stylesheet" href="/assets/player.css">
<script type="module" src="/assets/player.js"></script>
</head>
<body><div id="app"></div><noscript>The subsecond player needs JavaScript.</noscript></body>
</html>
`;

const ASSETS: Record<string, string> = {
	'player.js': 'text/javascript; charset=utf-8',
	'player.js.map': 'application/json; charset=utf-8',
	'player.css': 'text/css; charset=utf-8',
	'player.LEGAL.txt': 'text/plain; charset=utf-8',
};

/**
 * Makes sure the web player bundle exists and is current: it is built at
 * install time, and rebuilt here when a checkout's sources are newer.
 */
export async function ensurePlayerBundle(logger: Logger): Promise<string> {
	const require = createRequire(import.meta.url);
	const script = path.resolve(path.dirname(require.resolve('../../package.json')), 'scripts', 'build-client.mjs');
	const build = (await import(script)) as BuildModule;
	if (build.playerBundleStale()) {
		const started = Date.now();
		await build.buildPlayer({ quiet: true });
		logger.info({ ms: Date.now() - started }, 'web player bundled');
	}
	return build.OUT_DIR;
}

function sendShell(res: Response): void {
	res.setHeader('Content-Type', 'text/html; charset=utf-8');
	res.setHeader('Cache-Control', 'no-cache');
	res.setHeader('X-Content-Type-Options', 'nosniff');
	res.send(SHELL);
}

/** `/` (live streams), `/watch/NAME` (the player) and the bundled assets. */
export function playerRoutes(distDir: string): Router {
	const r = Router();
	r.get('/', (_req, res) => sendShell(res));
	r.get('/watch/:name', (req, res) => {
		assertStreamName(req.params.name);
		sendShell(res);
	});
	r.get('/assets/:file', (req, res, next) => {
		const type = ASSETS[req.params.file];
		if (!type) {
			next();
			return;
		}
		// Only the fixed names above are served, so no path can leave distDir.
		const file = path.join(distDir, req.params.file);
		if (!fs.existsSync(file)) {
			next();
			return;
		}
		res.setHeader('Content-Type', type);
		res.setHeader('Cache-Control', 'no-cache');
		res.sendFile(file, { etag: true, lastModified: true, dotfiles: 'deny' });
	});
	return r;
}
