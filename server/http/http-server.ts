import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Express, NextFunction, Request, Response } from 'express';
import { TypedEmitter } from '../common/emitter.js';
import { ClosedError, NotFound, errorBody, httpStatusOf, toSubsecondError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';

export interface HttpServerOptions {
	host: string;
	port: number;
	tls: { cert: string | null; key: string | null };
	corsOrigin: string;
	logger: Logger;
}

export interface HttpServerEvents extends Record<string, unknown[]> {
	close: [];
}

/**
 * The HTTP(S) server: one express app that components mount routes on
 * (API, HLS, player, metrics), and the node server socket.io attaches to.
 * Call listen() after every component has mounted its routes.
 */
export class HttpServer extends TypedEmitter<HttpServerEvents> {
	readonly app: Express;
	readonly server: http.Server | https.Server;
	readonly secure: boolean;
	readonly #opts: HttpServerOptions;
	readonly #logger: Logger;
	#listening = false;
	#closed = false;

	private constructor(opts: HttpServerOptions) {
		super();
		this.#opts = opts;
		this.#logger = opts.logger.child({ component: 'http' });
		this.setListenerErrorLogger(this.#logger);
		this.app = express();
		this.app.disable('x-powered-by');
		this.app.set('trust proxy', 'loopback');
		this.app.use((req, res, next) => {
			res.setHeader('Access-Control-Allow-Origin', opts.corsOrigin);
			res.setHeader('Vary', 'Origin');
			if (req.method === 'OPTIONS') {
				res.setHeader('Access-Control-Allow-Methods', 'GET, POST, DELETE, OPTIONS');
				res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type, Range');
				res.setHeader('Access-Control-Max-Age', '600');
				res.status(204).end();
				return;
			}
			next();
		});
		this.secure = opts.tls.cert !== null && opts.tls.key !== null;
		this.server = this.secure
			? https.createServer({ cert: fs.readFileSync(opts.tls.cert ?? ''), key: fs.readFileSync(opts.tls.key ?? '') }, this.app)
			: http.createServer(this.app);
		// Long-polling socket.io and blocking HLS reloads hold requests open; keep
		// idle keep-alive sockets from piling up, but let those requests finish.
		this.server.keepAliveTimeout = 5_000;
		this.server.requestTimeout = 60_000;
	}

	static create(opts: HttpServerOptions): HttpServer {
		return new HttpServer(opts);
	}

	/** Adds the JSON 404 and error handlers, then listens. Returns the bound port. */
	async listen(): Promise<number> {
		if (this.#closed) throw new ClosedError('http server');
		if (this.#listening) return this.port;
		this.app.use((req: Request, _res: Response, next: NextFunction) => {
			next(new NotFound(`no route for ${req.method} ${req.path}`));
		});
		// Express recognises error handlers by their four parameters.
		this.app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
			const e = toSubsecondError(err);
			const status = (err as { status?: number; type?: string }).type === 'entity.parse.failed' ? 400 : httpStatusOf(e);
			if (status >= 500) this.#logger.error({ err, method: req.method, path: req.path }, 'request failed');
			else this.#logger.debug({ code: e.code, method: req.method, path: req.path }, e.message);
			if (res.headersSent) {
				res.end();
				return;
			}
			const body = status === 400 && e.code === 'internal' ? { code: 'bad_request', message: 'malformed request body' } : errorBody(e);
			res.status(status).json({ error: body });
		});
		await new Promise<void>((resolve, reject) => {
			const onError = (err: Error): void => reject(err);
			this.server.once('error', onError);
			this.server.listen(this.#opts.port, this.#opts.host, () => {
				this.server.off('error', onError);
				resolve();
			});
		});
		this.#listening = true;
		this.#logger.info({ port: this.port, secure: this.secure }, 'http listening');
		return this.port;
	}

	get port(): number {
		const addr = this.server.address() as AddressInfo | null;
		return addr?.port ?? 0;
	}

	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		if (this.#listening) {
			await new Promise<void>((resolve) => {
				this.server.close(() => resolve());
				this.server.closeAllConnections();
			});
		}
		this.emit('close');
		this.removeAllListeners();
	}
}
