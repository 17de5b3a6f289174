import type http from 'node:http';
import type https from 'node:https';
import { Server as IOServer } from 'socket.io';
import { TypedEmitter } from '../server/common/emitter.js';
import type { ErrorCode } from '../server/common/errors.js';
import type { Logger } from '../server/common/logger.js';
import type { Config } from '../server/config/schema.js';
import type { Stream, StreamRegistry } from '../server/core/stream.js';
import type { Producer, StreamRouter, StreamRouters } from '../server/sfu/stream-routers.js';
import type { ViewerVerifier } from '../server/auth/viewer-jwt.js';
import type { ServerToClientEvents } from '../client/shared/protocol.js';
import { ViewerSession } from './session.js';
import type { SessionContext, SessionInfo, ViewerSocket, ViewerTransportStats } from './session.js';

/**
 * Largest socket.io message accepted. Real requests are a few KiB (a
 * browser's rtpCapabilities is the largest); socket.io closes a connection
 * that sends more, which protects the server from memory blow-ups.
 */
export const MAX_MESSAGE_BYTES = 64 * 1024;

export interface SignalingServiceOptions {
	httpServer: http.Server | https.Server;
	registry: StreamRegistry;
	routers: StreamRouters;
	config: Pick<Config, 'rtc' | 'signaling' | 'streams' | 'http'>;
	/** Viewer access control (server/auth/viewer-jwt.ts). */
	verifyViewer: ViewerVerifier;
	logger: Logger;
}

export interface SignalingServiceEvents extends Record<string, unknown[]> {
	/** A viewer connected (not yet joined). */
	connection: [session: ViewerSession];
	close: [];
}

export interface SignalingStats {
	connections: number;
	/** Joined viewers per stream. */
	viewers: Record<string, number>;
	/** Answers per request name and outcome code ('ok' or an error code). */
	requests: Record<string, Partial<Record<'ok' | ErrorCode, number>>>;
}

function remoteAddressOf(socket: ViewerSocket): string {
	const addr = socket.handshake.address;
	// Like the HTTP side (trust proxy: loopback): believe X-Forwarded-For only
	// from a reverse proxy on this host.
	const xff = socket.handshake.headers['x-forwarded-for'];
	if (typeof xff === 'string' && /^(::ffff:)?127\.|^::1$/.test(addr)) {
		const first = xff.split(',')[0]?.trim();
		if (first) return first;
	}
	return addr;
}

/**
 * The socket.io signaling service of the contract: viewers join a stream and
 * negotiate WebRTC transports and consumers on the stream's routers, spread
 * over the mediasoup workers. Follows the stream's producers (StreamRouters
 * `ready`/`gone`) and tells joined viewers when the stream comes and goes.
 */
export class SignalingService extends TypedEmitter<SignalingServiceEvents> {
	readonly name = 'signaling';
	readonly io: IOServer<Record<string, (...args: unknown[]) => void>, ServerToClientEvents>;
	readonly #opts: SignalingServiceOptions;
	readonly #log: Logger;
	readonly #sessions = new Map<string, ViewerSession>();
	readonly #byStream = new Map<string, Set<ViewerSession>>();
	readonly #live = new Set<string>();
	readonly #joinQueues = new Map<string, Promise<void>>();
	readonly #requests: SignalingStats['requests'] = {};
	readonly #ctx: SessionContext;
	#closed = false;

	readonly #onReady = (stream: string, producers: readonly Producer[]): void => {
		this.#live.add(stream);
		this.#log.debug({ stream, producers: producers.map((p) => p.kind) }, 'stream producers ready');
		// StreamRouters says `gone` only when producers are cleared while they
		// still exist; a publisher side that closes them first would leave
		// viewers waiting for a stream that ended. Notice that case too.
		for (const p of producers) {
			p.observer.once('close', () => {
				// After the current call stack: clearProducers closes the producers
				// one by one and then says `gone` with the real reason.
				setImmediate(() => {
					if (!this.#closed && this.#live.has(stream) && this.#opts.routers.producers(stream).every((q) => q.closed)) {
						this.#onGone(stream, 'the publisher stopped');
					}
				});
			});
		}
		for (const s of this.#byStream.get(stream) ?? []) s.onLive();
	};

	readonly #onGone = (stream: string, reason: string): void => {
		// Viewers were never told this stream was live (or already heard it went).
		if (!this.#live.delete(stream)) return;
		this.#log.debug({ stream, reason }, 'stream producers gone');
		for (const s of this.#byStream.get(stream) ?? []) s.onOffline(reason);
	};

	readonly #onRouterLost = (stream: string, workerIndex: number): void => {
		const hit = [...(this.#byStream.get(stream) ?? [])].filter((s) => s.workerIndex === workerIndex);
		// Their transports closed with the router (each client got transportClosed);
		// the next createTransport lands on a live worker.
		if (hit.length > 0) this.#log.warn({ stream, worker: workerIndex, viewers: hit.length }, 'viewers lost their worker');
	};

	readonly #onStreamRemoved = (stream: Stream): void => {
		// The registry forgets streams with no publisher and no viewers; their
		// routers go too. At shutdown the routers are closed wholesale instead.
		if (this.#opts.registry.closed || this.#closed || this.#byStream.has(stream.name)) return;
		this.#live.delete(stream.name);
		void this.#opts.routers.closeStream(stream.name);
	};

	private constructor(opts: SignalingServiceOptions) {
		super();
		this.#opts = opts;
		this.#log = opts.logger.child({ component: 'signaling' });
		this.setListenerErrorLogger(this.#log);
		const cors = opts.config.http.corsOrigin;
		this.io = new IOServer(opts.httpServer, {
			serveClient: false,
			maxHttpBufferSize: MAX_MESSAGE_BYTES,
			cors: { origin: cors === '*' ? true : cors.split(',').map((o) => o.trim()) },
			// Notice a vanished viewer within ~20 s and free its transports.
			pingInterval: 10_000,
			pingTimeout: 10_000,
			connectTimeout: 10_000,
		});
		this.#ctx = {
			registry: opts.registry,
			routers: opts.routers,
			verifyViewer: opts.verifyViewer,
			config: opts.config,
			isLive: (stream) => this.isLive(stream),
			acquireRouter: (stream) => this.#acquireRouter(stream),
			releaseRouter: (router) => {
				router.slot.load -= 1;
			},
			attach: (session, stream) => {
				let set = this.#byStream.get(stream);
				if (!set) this.#byStream.set(stream, (set = new Set()));
				set.add(session);
			},
			detach: (session, stream) => {
				const set = this.#byStream.get(stream);
				if (!set) return;
				set.delete(session);
				if (set.size === 0) this.#byStream.delete(stream);
			},
			count: (request, code) => {
				const byCode = (this.#requests[request] ??= {});
				byCode[code] = (byCode[code] ?? 0) + 1;
			},
		};
		this.io.on('connection', (socket) => this.#onConnection(socket));
		opts.routers.on('ready', this.#onReady);
		opts.routers.on('gone', this.#onGone);
		opts.routers.on('routerLost', this.#onRouterLost);
		opts.registry.on('streamRemoved', this.#onStreamRemoved);
		for (const s of opts.registry.list()) {
			if (opts.routers.producers(s.name).length > 0) this.#live.add(s.name);
		}
	}

	/**
	 * Joins of one stream pick their router one after the other, each counted
	 * in its worker's load before the next picks: viewers arriving together
	 * spread over the workers instead of all landing on the one that looked
	 * least loaded when they came.
	 */
	#acquireRouter(stream: string): Promise<StreamRouter> {
		const previous = this.#joinQueues.get(stream) ?? Promise.resolve();
		const next = previous
			.catch(() => undefined)
			.then(async () => {
				const sr = await this.#opts.routers.viewerRouter(stream);
				sr.slot.load += 1;
				return sr;
			});
		const tail = next.then(
			() => undefined,
			() => undefined,
		);
		this.#joinQueues.set(stream, tail);
		void tail.then(() => {
			if (this.#joinQueues.get(stream) === tail) this.#joinQueues.delete(stream);
		});
		return next;
	}

	/** Attaches socket.io (default path `/socket.io/`) to the HTTP server. */
	static create(opts: SignalingServiceOptions): Promise<SignalingService> {
		return Promise.resolve(new SignalingService(opts));
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** Whether `stream` has producers viewers can consume now. */
	isLive(stream: string): boolean {
		return this.#live.has(stream) && this.#opts.routers.producers(stream).some((p) => !p.closed);
	}

	#onConnection(socket: ViewerSocket): void {
		if (this.#closed) {
			socket.disconnect(true);
			return;
		}
		const session = new ViewerSession(socket, remoteAddressOf(socket), this.#ctx, this.#log);
		this.#sessions.set(socket.id, session);
		socket.on('disconnect', () => {
			session.close();
			this.#sessions.delete(socket.id);
		});
		socket.on('error', (err) => this.#log.debug({ err, connection: socket.id }, 'socket error'));
		this.emit('connection', session);
	}

	/** The connection of that socket id, for admin and tests. */
	session(id: string): ViewerSession | undefined {
		return this.#sessions.get(id);
	}

	sessions(): SessionInfo[] {
		return [...this.#sessions.values()].map((s) => s.info());
	}

	/** mediasoup's send counters of every viewer transport (for metrics and benchmarks). */
	async transportStats(): Promise<ViewerTransportStats[]> {
		const all = await Promise.all([...this.#sessions.values()].map((s) => s.transportStats()));
		return all.flat();
	}

	stats(): SignalingStats {
		const viewers: Record<string, number> = {};
		for (const [stream, set] of this.#byStream) viewers[stream] = set.size;
		return { connections: this.#sessions.size, viewers, requests: structuredClone(this.#requests) };
	}

	/**
	 * Closes every session (and with them every transport and consumer) and
	 * drops the connections. Viewers see a transport close, not a kick, so
	 * their libraries reconnect to the restarted server. Leaves the HTTP
	 * server to its owner. Idempotent.
	 */
	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		const { routers, registry } = this.#opts;
		routers.off('ready', this.#onReady);
		routers.off('gone', this.#onGone);
		routers.off('routerLost', this.#onRouterLost);
		registry.off('streamRemoved', this.#onStreamRemoved);
		for (const s of this.#sessions.values()) s.close();
		this.#sessions.clear();
		this.#byStream.clear();
		// Not io.close(): that would also close the shared HTTP server.
		this.io.engine.close();
		await Promise.allSettled(
			[...this.io._nsps.values()].map(async (nsp) => {
				await nsp.adapter.close();
			}),
		);
		this.#log.debug('signaling closed');
		this.emit('close');
		this.removeAllListeners();
	}
}
