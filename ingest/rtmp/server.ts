import { readFile } from 'node:fs/promises';
import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import { TypedEmitter } from '../../server/common/emitter.js';
import { ClosedError, Unavailable } from '../../server/common/errors.js';
import type { Logger } from '../../server/common/logger.js';
import type { StreamRegistry } from '../../server/core/stream.js';
import { RtmpConnection, newCounters } from './connection.js';
import { normalizeAddress } from './protocol.js';
import type { RtmpConnectionInfo, RtmpCounters, RtmpErrorReason, RtmpProtocol } from './connection.js';

export interface RtmpServerOptions {
	host: string;
	/** 0 picks a free port. */
	port: number;
	/** The application publishers connect to: rtmp://HOST:PORT/<app>. */
	app: string;
	handshakeTimeoutMs: number;
	idleTimeoutMs: number;
	/** Time a connection has to start publishing (after connecting or unpublishing). */
	publishTimeoutMs: number;
	maxMessageSize: number;
	/** Across the RTMP and RTMPS listeners. */
	maxConnections: number;
	outChunkSize: number;
	/** The TLS listener; off while cert or key is null. cert and key are PEM file paths. */
	rtmps?: { port: number; cert: string | null; key: string | null };
	registry: StreamRegistry;
	logger: Logger;
	/** Called for refused or dropped input (for the ingest error metric); must not throw. */
	onError?: (protocol: RtmpProtocol, reason: RtmpErrorReason) => void;
}

export interface RtmpServerStats extends RtmpCounters {
	/** Open connections (RTMP and RTMPS). */
	connections: number;
	/** Connections publishing a stream now. */
	publishing: number;
	acceptedConnections: number;
	/** Connections closed at once because maxConnections was reached. */
	refusedConnections: number;
	/** TLS handshakes that failed on the RTMPS listener. */
	tlsErrors: number;
}

export interface RtmpServerEvents extends Record<string, unknown[]> {
	connection: [info: RtmpConnectionInfo];
	close: [];
}

function listen(server: net.Server, port: number, host: string, what: string): Promise<void> {
	return new Promise((resolve, reject) => {
		const onError = (err: NodeJS.ErrnoException): void => {
			reject(new Unavailable(`cannot listen for ${what} on ${host}:${port}: ${err.code ?? err.message}`, { cause: err }));
		};
		server.once('error', onError);
		server.listen(port, host, () => {
			server.off('error', onError);
			resolve();
		});
	});
}

function closeListener(server: net.Server): Promise<void> {
	return new Promise((resolve) => {
		if (!server.listening) return resolve();
		server.close(() => resolve());
	});
}

/**
 * The RTMP ingest server: a TCP listener (and a TLS one for RTMPS when a
 * certificate is configured) whose connections publish into the stream core.
 * One misbehaving connection is closed with a logged reason; the others are
 * untouched.
 */
export class RtmpServer extends TypedEmitter<RtmpServerEvents> {
	readonly name = 'rtmp';
	readonly #opts: RtmpServerOptions;
	readonly #logger: Logger;
	readonly #plain: net.Server;
	#secure: tls.Server | null = null;
	readonly #connections = new Set<RtmpConnection>();
	/** Every socket until it is fully closed, including connections lingering to flush. */
	readonly #sockets = new Set<Socket>();
	readonly #totals: RtmpCounters = newCounters();
	#accepted = 0;
	#refused = 0;
	#tlsErrors = 0;
	#nextId = 1;
	#lastRefusalLog = 0;
	#closing: Promise<void> | null = null;

	private constructor(opts: RtmpServerOptions) {
		super();
		this.#opts = opts;
		this.#logger = opts.logger.child({ component: 'rtmp' });
		this.setListenerErrorLogger(this.#logger);
		this.#plain = net.createServer((socket) => this.#accept(socket, 'rtmp'));
		this.#plain.on('error', (err) => this.#logger.error({ err }, 'RTMP listener error'));
	}

	/** Binds the RTMP listener, and the RTMPS one when cert and key are set. */
	static async create(opts: RtmpServerOptions): Promise<RtmpServer> {
		const server = new RtmpServer(opts);
		try {
			await listen(server.#plain, opts.port, opts.host, 'RTMP');
			const r = opts.rtmps;
			if (r?.cert && r.key) {
				const [cert, key] = await Promise.all([readFile(r.cert), readFile(r.key)]).catch((err: unknown) => {
					throw new Unavailable(`cannot read the RTMPS certificate or key: ${(err as Error).message}`, { cause: err });
				});
				const secure = tls.createServer({ cert, key, handshakeTimeout: opts.handshakeTimeoutMs }, (socket) =>
					server.#accept(socket, 'rtmps'),
				);
				// Bounds sockets still in their TLS handshake; #accept counts the rest.
				secure.maxConnections = opts.maxConnections;
				secure.on('tlsClientError', (err) => {
					server.#tlsErrors++;
					server.#opts.onError?.('rtmps', 'tls_handshake');
					server.#logger.debug({ err: err.message }, 'RTMPS TLS handshake failed');
				});
				secure.on('error', (err) => server.#logger.error({ err }, 'RTMPS listener error'));
				// Sockets still in their TLS handshake are not connections yet; close() must end them too.
				secure.on('connection', (raw: Socket) => server.#track(raw));
				server.#secure = secure;
				await listen(secure, r.port, opts.host, 'RTMPS');
			}
		} catch (err) {
			await server.close();
			throw err;
		}
		server.#logger.info(
			{ port: server.port, rtmpsPort: server.rtmpsPort, app: opts.app },
			`RTMP ingest listening on ${opts.host}:${server.port}${server.rtmpsPort !== null ? `, RTMPS on ${server.rtmpsPort}` : ''}`,
		);
		return server;
	}

	get closed(): boolean {
		return this.#closing !== null;
	}

	/** The bound RTMP port. */
	get port(): number {
		const a = this.#plain.address() as AddressInfo | null;
		return a?.port ?? this.#opts.port;
	}

	/** The bound RTMPS port, or null when RTMPS is off. */
	get rtmpsPort(): number | null {
		if (!this.#secure) return null;
		const a = this.#secure.address() as AddressInfo | null;
		return a?.port ?? null;
	}

	get app(): string {
		return this.#opts.app;
	}

	stats(): RtmpServerStats {
		let publishing = 0;
		for (const c of this.#connections) if (c.state === 'publishing') publishing++;
		return {
			...this.#totals,
			connections: this.#connections.size,
			publishing,
			acceptedConnections: this.#accepted,
			refusedConnections: this.#refused,
			tlsErrors: this.#tlsErrors,
		};
	}

	/** Open connections, of one protocol or of both. */
	connectionCount(protocol?: RtmpProtocol): number {
		if (protocol === undefined) return this.#connections.size;
		let n = 0;
		for (const c of this.#connections) if (c.protocol === protocol) n++;
		return n;
	}

	connections(): RtmpConnectionInfo[] {
		return [...this.#connections].map((c) => c.info());
	}

	/** Closes one connection by id (admin "kick"); returns whether it existed. */
	disconnect(id: number, reason: string): boolean {
		if (this.#closing) throw new ClosedError('RTMP server');
		for (const c of this.#connections) {
			if (c.id === id) {
				c.close(reason);
				return true;
			}
		}
		return false;
	}

	#track(socket: Socket): void {
		if (this.#sockets.has(socket)) return;
		this.#sockets.add(socket);
		socket.once('close', () => this.#sockets.delete(socket));
	}

	#accept(socket: Socket, protocol: RtmpProtocol): void {
		// A socket that errors before a connection owns it must not become an uncaught exception.
		socket.on('error', () => undefined);
		if (this.#closing) {
			socket.destroy();
			return;
		}
		if (this.#connections.size >= this.#opts.maxConnections) {
			this.#refused++;
			this.#opts.onError?.(protocol, 'max_connections');
			const now = Date.now();
			if (now - this.#lastRefusalLog > 5000) {
				this.#lastRefusalLog = now;
				this.#logger.warn(
					{ remoteAddress: socket.remoteAddress, maxConnections: this.#opts.maxConnections, refused: this.#refused },
					'connection refused: maxConnections reached',
				);
			}
			socket.destroy();
			return;
		}
		this.#accepted++;
		this.#track(socket);
		const id = this.#nextId++;
		const remoteAddress = normalizeAddress(socket.remoteAddress);
		const conn = new RtmpConnection({
			id,
			socket,
			protocol,
			app: this.#opts.app,
			handshakeTimeoutMs: this.#opts.handshakeTimeoutMs,
			idleTimeoutMs: this.#opts.idleTimeoutMs,
			publishTimeoutMs: this.#opts.publishTimeoutMs,
			maxMessageSize: this.#opts.maxMessageSize,
			outChunkSize: this.#opts.outChunkSize,
			registry: this.#opts.registry,
			logger: this.#logger.child({ conn: id, remoteAddress, protocol }),
			totals: this.#totals,
			onError: this.#opts.onError,
		});
		this.#connections.add(conn);
		conn.once('close', () => this.#connections.delete(conn));
		this.#logger.debug({ conn: id, remoteAddress, protocol }, 'connection accepted');
		this.emit('connection', conn.info());
	}

	/** Stops listening, closes every connection (ending their publications). Idempotent. */
	close(): Promise<void> {
		if (this.#closing) return this.#closing;
		this.#closing = (async (): Promise<void> => {
			const listeners = [closeListener(this.#plain)];
			if (this.#secure) listeners.push(closeListener(this.#secure));
			for (const c of [...this.#connections]) c.close('server shutting down', false);
			for (const s of this.#sockets) s.destroy();
			await Promise.all(listeners);
			this.#logger.debug('RTMP ingest closed');
			this.emit('close');
			this.removeAllListeners();
		})();
		return this.#closing;
	}
}
