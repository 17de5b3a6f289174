import { createHash, timingSafeEqual } from 'node:crypto';
import express, { Router } from 'express';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { z } from 'zod';
import { BadRequest, Conflict, NotFound, Unauthorized, Unsupported } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { assertStreamName } from '../core/stream.js';
import type { Stream, StreamInfo, StreamRegistry, ViewerInfo, ViewerPath } from '../core/stream.js';

function sha256(s: string): Buffer {
	return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * Requires `Authorization: Bearer <token>`. Both sides are hashed first, so
 * the comparison is constant-time whatever the length of the guess.
 */
export function bearerAuth(token: string): RequestHandler {
	const expected = sha256(token);
	return (req: Request, res: Response, next: NextFunction): void => {
		const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '');
		res.setHeader('Cache-Control', 'no-store');
		if (!m?.[1]) {
			res.setHeader('WWW-Authenticate', 'Bearer realm="subsecond"');
			next(new Unauthorized('this endpoint needs an `Authorization: Bearer <admin token>` header'));
			return;
		}
		if (!timingSafeEqual(sha256(m[1]), expected)) {
			res.setHeader('WWW-Authenticate', 'Bearer realm="subsecond", error="invalid_token"');
			next(new Unauthorized('wrong admin token'));
			return;
		}
		next();
	};
}

/** One viewer in the admin listing. */
export interface AdminViewer {
	id: string;
	path: ViewerPath;
	remoteAddress: string;
	joinedAt: string | null;
	connectedSeconds: number | null;
	/** Whether DELETE /api/admin/viewers/:id can end this viewer's session (not for HLS). */
	disconnectable: boolean;
}

/** One stream in the admin listing: the public info plus who publishes and who watches. */
export type AdminStream = StreamInfo & {
	viewerCounts: Record<ViewerPath, number>;
	publisher: {
		publication: string;
		protocol: string;
		remoteAddress: string;
		startedAt: string;
		uptimeSeconds: number;
		stats: Record<string, number>;
		videoPath: { mode: string; reason: string } | null;
	} | null;
	viewerList: AdminViewer[];
};

function viewerView(v: Readonly<ViewerInfo>, now: number): AdminViewer {
	return {
		id: v.id,
		path: v.path,
		remoteAddress: v.remoteAddress,
		joinedAt: v.joinedAt !== undefined ? new Date(v.joinedAt).toISOString() : null,
		connectedSeconds: v.joinedAt !== undefined ? Math.max(0, Math.round((now - v.joinedAt) / 1000)) : null,
		disconnectable: typeof v.disconnect === 'function',
	};
}

export function adminStreamView(stream: Stream, now = Date.now()): AdminStream {
	const pub = stream.live ? stream.publication : null;
	return {
		...stream.info(),
		viewerCounts: { ...stream.viewerCounts },
		publisher: pub
			? {
					publication: pub.id,
					protocol: pub.protocol,
					remoteAddress: pub.remoteAddress,
					startedAt: new Date(pub.startedAt).toISOString(),
					uptimeSeconds: Math.max(0, Math.round((now - pub.startedAt) / 1000)),
					stats: { ...pub.stats },
					videoPath: pub.videoPath ? { ...pub.videoPath } : null,
				}
			: null,
		viewerList: stream.viewerList().map((v) => viewerView(v, now)),
	};
}

const actionBody = z
	.strictObject({
		/** Shown to the publisher/viewer where the protocol can carry it, and logged. */
		reason: z.string().trim().min(1).max(200).optional(),
	})
	.optional();

const viewerId = z.string().min(1).max(256);

function parseReason(body: unknown, fallback: string): string {
	const r = actionBody.safeParse(body ?? undefined);
	if (!r.success) {
		const issue = r.error.issues[0];
		throw new BadRequest(`invalid body: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'malformed'}`);
	}
	return r.data?.reason ?? fallback;
}

export interface AdminRoutesOptions {
	registry: StreamRegistry;
	/** The admin token; null turns the admin API off (every route answers 404). */
	token: string | null;
	logger: Logger;
	/** Told about each action, for metrics. */
	onAction?: (action: 'kick' | 'close_stream' | 'disconnect_viewer') => void;
}

/**
 * The admin API, mounted at /api/admin: list streams with publishers and
 * viewers, kick a publisher, close a stream, disconnect a viewer.
 */
export function adminRoutes(opts: AdminRoutesOptions): Router {
	const r = Router();
	const logger = opts.logger.child({ component: 'admin' });
	if (opts.token === null) {
		r.use(() => {
			throw new NotFound('the admin API is off: set auth.adminToken (SUBSECOND_AUTH_ADMIN_TOKEN) to turn it on');
		});
		return r;
	}
	const { registry } = opts;
	r.use(bearerAuth(opts.token));
	// Parsed only after authentication, and small: these bodies hold a reason at most.
	r.use(express.json({ limit: '4kb' }));

	const liveOrKnown = (name: string): Stream => {
		const stream = registry.get(name);
		if (!stream) throw new NotFound(`no stream named ${name}`);
		return stream;
	};

	r.get('/streams', (_req, res) => {
		const now = Date.now();
		const streams = registry.list().filter((s) => s.live || s.viewers > 0);
		res.json(streams.map((s) => adminStreamView(s, now)));
	});

	r.get('/streams/:name', (req, res) => {
		const stream = liveOrKnown(assertStreamName(req.params.name));
		res.json(adminStreamView(stream));
	});

	r.post('/streams/:name/kick', (req, res) => {
		const name = assertStreamName(req.params.name);
		const reason = parseReason(req.body, 'kicked by admin');
		const pub = registry.get(name)?.publication;
		if (!pub || pub.ended) throw new NotFound(`stream ${name} has no publisher`);
		logger.info({ stream: name, publication: pub.id, publisher: pub.remoteAddress, by: req.ip, reason }, 'admin: kick publisher');
		pub.kick(reason);
		opts.onAction?.('kick');
		res.json({ stream: name, kicked: true, publication: pub.id, reason });
	});

	r.delete('/streams/:name', (req, res) => {
		const name = assertStreamName(req.params.name);
		const reason = parseReason(req.body, 'stream closed by admin');
		const stream = liveOrKnown(name);
		const pub = stream.live ? stream.publication : null;
		let disconnected = 0;
		let failed = 0;
		let notDisconnectable = 0;
		for (const v of stream.viewerList()) {
			if (typeof v.disconnect !== 'function') {
				notDisconnectable++;
				continue;
			}
			try {
				v.disconnect(reason);
				disconnected++;
			} catch (err) {
				failed++;
				logger.warn({ err, stream: name, viewer: v.id }, 'admin: viewer disconnect failed');
			}
		}
		pub?.kick(reason);
		logger.info(
			{ stream: name, publication: pub?.id, by: req.ip, reason, disconnected, failed, notDisconnectable },
			'admin: close stream',
		);
		opts.onAction?.('close_stream');
		res.json({
			stream: name,
			kicked: pub !== null,
			viewersDisconnected: disconnected,
			viewersFailed: failed,
			// HLS viewers have no session: they stop once the playlist ends.
			viewersNotDisconnectable: notDisconnectable,
			reason,
		});
	});

	r.delete('/viewers/:id', (req, res) => {
		const id = viewerId.safeParse(req.params.id);
		if (!id.success) throw new BadRequest('invalid viewer id');
		const reason = parseReason(req.body, 'disconnected by admin');
		const found = registry.findViewer(id.data);
		if (!found) throw new NotFound(`no viewer with id ${id.data}`);
		const { stream, viewer } = found;
		if (typeof viewer.disconnect !== 'function') {
			throw new Conflict(`viewer ${viewer.id} watches over ${viewer.path}, which has no session the server can end`);
		}
		logger.info({ stream: stream.name, viewer: viewer.id, path: viewer.path, by: req.ip, reason }, 'admin: disconnect viewer');
		viewer.disconnect(reason);
		opts.onAction?.('disconnect_viewer');
		res.json({ id: viewer.id, stream: stream.name, path: viewer.path, disconnected: true, reason });
	});

	// body-parser's own errors (too large, bad charset) are the client's, not ours.
	r.use((err: unknown, _req: Request, _res: Response, next: NextFunction) => {
		const type = (err as { type?: unknown }).type;
		if (type === 'entity.too.large') next(new BadRequest('request body too large: these routes take at most { "reason": "..." }'));
		else if (type === 'charset.unsupported' || type === 'encoding.unsupported') next(new Unsupported('request body encoding not supported'));
		else next(err);
	});

	return r;
}
