import { Router } from 'express';
import { NotFound } from '../common/errors.js';
import { assertStreamName } from '../core/stream.js';
import type { StreamRegistry } from '../core/stream.js';

export interface ApiInfo {
	name: 'subsecond';
	version: string;
	http: { port: number; secure: boolean };
	rtmp: { port: number; url: string; rtmpsPort: number | null } | null;
	rtc: { announcedIp: string; ports: { worker: number; udp: number; tcp: number }[] };
	hls: boolean;
	viewerTokenRequired: boolean;
}

/** The read-only stream API and the info and health endpoints. */
export function apiRoutes(registry: StreamRegistry, info: () => ApiInfo): Router {
	const r = Router();
	r.get('/healthz', (_req, res) => {
		res.setHeader('Cache-Control', 'no-store');
		res.json({ ok: true, closed: registry.closed, uptimeSeconds: Math.round(process.uptime()) });
	});
	r.get('/api/info', (_req, res) => {
		res.setHeader('Cache-Control', 'no-store');
		res.json(info());
	});
	r.get('/api/streams', (_req, res) => {
		res.setHeader('Cache-Control', 'no-store');
		res.json(registry.liveStreams().map((s) => s.info()));
	});
	r.get('/api/streams/:name', (req, res) => {
		const name = assertStreamName(req.params.name);
		const stream = registry.get(name);
		if (!stream?.live) throw new NotFound(`stream ${name} is not live`);
		res.setHeader('Cache-Control', 'no-store');
		res.json(stream.info());
	});
	return r;
}
