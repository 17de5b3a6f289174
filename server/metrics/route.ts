import { Router } from 'express';
import { ConfigError } from '../config/load.js';
import { bearerAuth } from '../http/admin.js';
import type { Metrics } from './metrics.js';

export interface MetricsRouteOptions {
	/** The admin token (auth.adminToken). */
	adminToken: string | null;
	/** Require the admin token to scrape (metrics.requireAdminToken). */
	requireAdminToken: boolean;
}

/** GET /metrics in the Prometheus text format, optionally behind the admin token. */
export function metricsRoutes(metrics: Metrics, opts: MetricsRouteOptions): Router {
	if (opts.requireAdminToken && opts.adminToken === null) {
		// Refuse to start rather than serve metrics unprotected against the operator's wish.
		throw new ConfigError('metrics.requireAdminToken is true but auth.adminToken is not set');
	}
	const r = Router();
	const guard = opts.requireAdminToken && opts.adminToken !== null ? [bearerAuth(opts.adminToken)] : [];
	r.get('/metrics', ...guard, async (_req, res) => {
		const body = await metrics.scrape();
		res.setHeader('Cache-Control', 'no-store');
		res.setHeader('Content-Type', metrics.contentType);
		res.send(body);
	});
	return r;
}
