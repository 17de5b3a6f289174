import type { types as ms } from 'mediasoup';
import type { Socket } from 'socket.io';
import {
	BadRequest,
	ClosedError,
	InvalidState,
	LimitExceeded,
	NotFound,
	RateLimited,
	SubsecondError,
	Unsupported,
	errorBody,
	toSubsecondError,
} from '../server/common/errors.js';
import type { ErrorCode } from '../server/common/errors.js';
import type { Logger } from '../server/common/logger.js';
import type { Config } from '../server/config/schema.js';
import { assertStreamName } from '../server/core/stream.js';
import type { Stream, StreamRegistry } from '../server/core/stream.js';
import type { StreamRouter, StreamRouters } from '../server/sfu/stream-routers.js';
import type { WorkerSlot } from '../server/sfu/worker-pool.js';
import type { ViewerVerifier } from '../server/auth/viewer-jwt.js';
import { PROTOCOL_VERSION, REQUESTS } from '../client/shared/protocol.js';
import type {
	ConsumerDescription,
	RequestName,
	ResultOf,
	RtpCapabilities,
	ServerToClientEvents,
	SignalingErrorCode,
} from '../client/shared/protocol.js';
import { capabilitiesCover, describeMissingCodec } from './codec-support.js';
import { TokenBucket } from './rate-limit.js';
import { parseRequest } from './schemas.js';
import type { ParsedRequest } from './schemas.js';

// The wire codes are the error vocabulary's codes: a compile-time check that
// the two lists stay the same.
const _sameCodes: [ErrorCode, SignalingErrorCode] extends [SignalingErrorCode, ErrorCode] ? true : never = true;
void _sameCodes;

/** Requests queued or running per connection before new ones are refused. */
const MAX_IN_FLIGHT = 16;

type WireListenEvents = Record<string, (...args: unknown[]) => void>;
export type ViewerSocket = Socket<WireListenEvents, ServerToClientEvents>;

/** What a session needs from the service that owns it. */
export interface SessionContext {
	readonly registry: StreamRegistry;
	readonly routers: StreamRouters;
	readonly verifyViewer: ViewerVerifier;
	readonly config: Pick<Config, 'rtc' | 'signaling' | 'streams'>;
	isLive(stream: string): boolean;
	/**
	 * A router for one more viewer of `stream`, its worker's load already
	 * counting that viewer; give it back with releaseRouter().
	 */
	acquireRouter(stream: string): Promise<StreamRouter>;
	releaseRouter(router: StreamRouter): void;
	attach(session: ViewerSession, stream: string): void;
	detach(session: ViewerSession, stream: string): void;
	/** Counts a request outcome, for stats. */
	count(request: string, code: 'ok' | ErrorCode): void;
}

interface TransportEntry {
	readonly transport: ms.WebRtcTransport;
	readonly slot: WorkerSlot;
	connectTimer: NodeJS.Timeout | null;
	connectRequested: boolean;
	/** Set when we close it on purpose: the reason sent to the client, or null for silence. */
	closeReason: string | null | undefined;
}

interface ConsumerEntry {
	readonly consumer: ms.Consumer;
	readonly transportId: string;
}

export interface TransportInfo {
	id: string;
	worker: number;
	iceState: ms.IceState;
	dtlsState: ms.DtlsState;
	consumers: string[];
}

export interface SessionInfo {
	id: string;
	remoteAddress: string;
	stream: string | null;
	worker: number | null;
	transports: TransportInfo[];
	consumers: { id: string; producerId: string; kind: ms.MediaKind; paused: boolean; transportId: string }[];
	rateLimited: number;
}

/** Send-side counters of one viewer transport, from mediasoup. */
export interface ViewerTransportStats {
	connection: string;
	stream: string | null;
	transportId: string;
	worker: number;
	bytesSent: number;
	rtpBytesSent: number;
	rtxBytesSent: number;
	/** bits/s, as mediasoup measures it. */
	sendBitrate: number;
	availableOutgoingBitrate: number | null;
	/** udp or tcp, once ICE picked a path. */
	protocol: string | null;
}

type Handler<K extends RequestName> = (req: ParsedRequest<K>) => Promise<ResultOf<K>>;

/** Maps mediasoup's own errors onto the vocabulary (it throws TypeError for bad parameters). */
function fromMediasoup(err: unknown): SubsecondError {
	if (err instanceof SubsecondError) return err;
	if (err instanceof Error) {
		if (err.name === 'TypeError') return new BadRequest(err.message, { cause: err });
		if (err.name === 'UnsupportedError') return new Unsupported(err.message, { cause: err });
		if (err.name === 'InvalidStateError') return new InvalidState(err.message, { cause: err });
	}
	return toSubsecondError(err);
}

/**
 * One socket.io connection: a small state machine (idle -> joined -> idle ...
 * -> closed) that owns everything the viewer created, so that leaving,
 * disconnecting or a server shutdown closes all of it. Requests run one at a
 * time in arrival order, each answered exactly once.
 */
export class ViewerSession {
	readonly id: string;
	readonly remoteAddress: string;
	readonly #socket: ViewerSocket;
	readonly #ctx: SessionContext;
	readonly #baseLog: Logger;
	#log: Logger;
	readonly #bucket: TokenBucket;
	#queue: Promise<void> = Promise.resolve();
	#inFlight = 0;
	#rateLimited = 0;

	#closed = false;
	/** Bumped on every join and teardown so a request that awaited can tell it is stale. */
	#generation = 0;
	#streamName: string | null = null;
	#release: (() => void) | null = null;
	#router: StreamRouter | null = null;
	readonly #transports = new Map<string, TransportEntry>();
	readonly #consumers = new Map<string, ConsumerEntry>();

	readonly #handlers: { [K in RequestName]: Handler<K> } = {
		join: (r) => this.#join(r),
		createTransport: () => this.#createTransport(),
		connectTransport: (r) => this.#connectTransport(r),
		consume: (r) => this.#consume(r),
		resume: (r) => this.#resume(r),
		leave: () => this.#leave(),
	};

	constructor(socket: ViewerSocket, remoteAddress: string, ctx: SessionContext, logger: Logger) {
		this.id = socket.id;
		this.remoteAddress = remoteAddress;
		this.#socket = socket;
		this.#ctx = ctx;
		this.#baseLog = logger.child({ connection: socket.id, remoteAddress });
		this.#log = this.#baseLog;
		const rate = ctx.config.signaling.maxRequestsPerSecond;
		this.#bucket = new TokenBucket(rate, rate * 2);
		for (const name of REQUESTS) {
			socket.on(name, (...args: unknown[]) => this.#onRequest(name, args));
		}
		socket.onAny((event: unknown, ...args: unknown[]) => {
			if (typeof event === 'string' && (REQUESTS as readonly string[]).includes(event)) return;
			this.#onUnknown(String(event), args);
		});
		this.#log.debug('viewer connected');
	}

	get closed(): boolean {
		return this.#closed;
	}

	get stream(): string | null {
		return this.#streamName;
	}

	/** The worker this viewer's router is on, while joined. */
	get workerIndex(): number | null {
		return this.#router?.slot.index ?? null;
	}

	info(): SessionInfo {
		const transports = [...this.#transports.values()].map(
			(t): TransportInfo => ({
				id: t.transport.id,
				worker: t.slot.index,
				iceState: t.transport.iceState,
				dtlsState: t.transport.dtlsState,
				consumers: [...this.#consumers.values()].filter((c) => c.transportId === t.transport.id).map((c) => c.consumer.id),
			}),
		);
		return {
			id: this.id,
			remoteAddress: this.remoteAddress,
			stream: this.#streamName,
			worker: this.workerIndex,
			transports,
			consumers: [...this.#consumers.values()].map((c) => ({
				id: c.consumer.id,
				producerId: c.consumer.producerId,
				kind: c.consumer.kind,
				paused: c.consumer.paused,
				transportId: c.transportId,
			})),
			rateLimited: this.#rateLimited,
		};
	}

	/** mediasoup's own counters for this viewer's transports (what the server sent). */
	async transportStats(): Promise<ViewerTransportStats[]> {
		const out: ViewerTransportStats[] = [];
		for (const t of [...this.#transports.values()]) {
			try {
				const [st] = await t.transport.getStats();
				if (!st) continue;
				out.push({
					connection: this.id,
					stream: this.#streamName,
					transportId: t.transport.id,
					worker: t.slot.index,
					bytesSent: st.bytesSent,
					rtpBytesSent: st.rtpBytesSent,
					rtxBytesSent: st.rtxBytesSent,
					sendBitrate: st.sendBitrate,
					availableOutgoingBitrate: st.availableOutgoingBitrate ?? null,
					protocol: st.iceSelectedTuple?.protocol ?? null,
				});
			} catch {
				// closed meanwhile
			}
		}
		return out;
	}

	// ---------------------------------------------------------------------
	// Request plumbing

	#onRequest(name: RequestName, args: unknown[]): void {
		const last = args.at(-1);
		const ack = typeof last === 'function' ? (last as (res: unknown) => void) : null;
		const params = ack ? args.slice(0, -1) : args;
		const fail = (err: SubsecondError): void => {
			this.#ctx.count(name, err.code);
			if (ack) ack({ ok: false, error: errorBody(err) });
			else this.#socket.emit('requestError', { request: name, error: errorBody(err) });
		};
		if (this.#closed) return;
		if (!this.#bucket.take()) {
			// Refused without a word when there is nobody to tell, so a flood
			// without callbacks cannot make us flood back.
			this.#rateLimited++;
			if (this.#rateLimited === 1 || this.#rateLimited % 100 === 0) {
				this.#log.warn({ rateLimited: this.#rateLimited }, 'viewer exceeds the request rate');
			}
			this.#ctx.count(name, 'rate_limited');
			if (ack) ack({ ok: false, error: errorBody(new RateLimited(`more than ${this.#ctx.config.signaling.maxRequestsPerSecond} requests per second`)) });
			return;
		}
		if (!ack) {
			this.#log.debug({ request: name }, 'request without an acknowledgement callback ignored');
			fail(new BadRequest(`${name} needs an acknowledgement callback; it was ignored`));
			return;
		}
		if (params.length > 1) {
			fail(new BadRequest(`${name} takes one payload object, got ${params.length} arguments`));
			return;
		}
		if (this.#inFlight >= MAX_IN_FLIGHT) {
			fail(new RateLimited(`more than ${MAX_IN_FLIGHT} requests waiting for an answer`));
			return;
		}
		this.#inFlight++;
		const run = async (): Promise<void> => {
			try {
				if (this.#closed) throw new ClosedError('connection');
				const req = parseRequest(name, params[0]);
				const handler = this.#handlers[name] as Handler<RequestName>;
				const result = await handler(req);
				this.#ctx.count(name, 'ok');
				ack({ ok: true, ...result });
			} catch (raw) {
				const err = fromMediasoup(raw);
				if (err.code === 'internal') this.#log.error({ err: raw, request: name }, 'request failed');
				else this.#log.debug({ request: name, code: err.code, reason: err.message }, 'request refused');
				this.#ctx.count(name, err.code);
				ack({ ok: false, error: errorBody(err) });
			} finally {
				this.#inFlight--;
			}
		};
		this.#queue = this.#queue.then(run);
	}

	#onUnknown(event: string, args: unknown[]): void {
		if (this.#closed || !this.#bucket.take()) return;
		const last = args.at(-1);
		const err = new BadRequest(`unknown request ${JSON.stringify(event.slice(0, 64))}; requests are ${REQUESTS.join(', ')}`);
		this.#ctx.count('unknown', err.code);
		if (typeof last === 'function') (last as (res: unknown) => void)({ ok: false, error: errorBody(err) });
		else this.#socket.emit('requestError', { request: event.slice(0, 64), error: errorBody(err) });
	}

	// ---------------------------------------------------------------------
	// Requests

	#assertJoined(): { name: string; router: StreamRouter; generation: number } {
		if (this.#closed) throw new ClosedError('connection');
		if (this.#streamName === null || this.#router === null) throw new InvalidState('join a stream first');
		return { name: this.#streamName, router: this.#router, generation: this.#generation };
	}

	async #join(req: ParsedRequest<'join'>): Promise<ResultOf<'join'>> {
		if (this.#streamName !== null) {
			throw new InvalidState(`already joined stream ${this.#streamName}; send leave first`);
		}
		const name = assertStreamName(req.stream);
		await this.#ctx.verifyViewer(name, req.token);
		const max = this.#ctx.config.streams.maxViewersPerStream;
		const { registry } = this.#ctx;
		if ((registry.get(name)?.viewerCounts.webrtc ?? 0) >= max) {
			throw new LimitExceeded(`stream ${name} already has ${max} WebRTC viewers`);
		}
		// The stream is created (bounded by the registry) before any router, so
		// joins to made-up names cannot pile up routers.
		registry.getOrCreate(name);
		const router = await this.#ctx.acquireRouter(name);
		let stream: Stream;
		try {
			if (this.#closed) throw new ClosedError('connection');
			// The registry may have swept the stream while we waited.
			stream = registry.getOrCreate(name);
			if (stream.viewerCounts.webrtc >= max) throw new LimitExceeded(`stream ${name} already has ${max} WebRTC viewers`);
		} catch (err) {
			this.#ctx.releaseRouter(router);
			throw err;
		}
		this.#generation++;
		this.#streamName = name;
		this.#router = router;
		this.#release = stream.addViewer('webrtc', {
			id: this.id,
			remoteAddress: this.remoteAddress,
			disconnect: (reason) => this.kick(reason),
		});
		this.#ctx.attach(this, name);
		this.#log = this.#baseLog.child({ stream: name });
		this.#log.info({ worker: router.slot.index }, 'viewer joined');
		return {
			stream: name,
			routerRtpCapabilities: router.router.rtpCapabilities,
			live: this.#ctx.isLive(name),
			iceServers: this.#ctx.config.rtc.iceServers,
			protocolVersion: PROTOCOL_VERSION,
		};
	}

	/** The viewer's router, replaced by a live one if its worker died. */
	async #liveRouter(): Promise<StreamRouter> {
		const joined = this.#assertJoined();
		if (!joined.router.router.closed) return joined.router;
		const fresh = await this.#ctx.acquireRouter(joined.name);
		if (this.#generation !== joined.generation || this.#closed) {
			this.#ctx.releaseRouter(fresh);
			throw new InvalidState('left the stream meanwhile');
		}
		this.#ctx.releaseRouter(joined.router);
		this.#router = fresh;
		this.#log.info({ worker: fresh.slot.index }, 'viewer moved to a new router (its worker died)');
		return fresh;
	}

	async #createTransport(): Promise<ResultOf<'createTransport'>> {
		const { generation } = this.#assertJoined();
		const { signaling, rtc } = this.#ctx.config;
		if (this.#transports.size >= signaling.maxTransportsPerConnection) {
			throw new LimitExceeded(`at most ${signaling.maxTransportsPerConnection} transports per connection`);
		}
		const sr = await this.#liveRouter();
		const slot = sr.slot;
		const transport = await sr.router.createWebRtcTransport({
			webRtcServer: slot.webRtcServer,
			enableUdp: true,
			enableTcp: true,
			preferUdp: true,
			initialAvailableOutgoingBitrate: rtc.initialAvailableOutgoingBitrate,
			appData: { connection: this.id, stream: sr.stream },
		});
		if (this.#closed || this.#generation !== generation) {
			transport.close();
			throw new InvalidState('left the stream meanwhile');
		}
		const entry: TransportEntry = { transport, slot, connectTimer: null, connectRequested: false, closeReason: undefined };
		this.#transports.set(transport.id, entry);
		// leastLoaded() spreads viewers by this count.
		slot.load += 1;
		transport.observer.once('close', () => this.#onTransportClosed(entry));
		transport.on('dtlsstatechange', (state) => {
			if (state === 'connected') {
				this.#clearConnectTimer(entry);
				this.#log.debug({ transport: transport.id, tuple: transport.iceSelectedTuple }, 'transport connected');
				// Clients resume before DTLS is done, and mediasoup drops the keyframe
				// request of a consumer that is not active yet: ask again now, so a
				// transcoded stream's first picture is an IDR made for this viewer.
				for (const c of this.#consumers.values()) {
					if (c.transportId === transport.id && c.consumer.kind === 'video' && !c.consumer.paused) {
						c.consumer.requestKeyFrame().catch(() => undefined);
					}
				}
			} else if (state === 'failed' || state === 'closed') {
				this.#closeTransport(entry, `DTLS ${state}`);
			}
		});
		entry.connectTimer = setTimeout(() => {
			entry.connectTimer = null;
			if (transport.dtlsState !== 'connected') {
				this.#closeTransport(entry, `not connected within ${signaling.transportConnectTimeoutMs} ms`);
			}
		}, signaling.transportConnectTimeoutMs);
		entry.connectTimer.unref();
		return {
			id: transport.id,
			iceParameters: transport.iceParameters,
			iceCandidates: transport.iceCandidates.map((c) => ({
				foundation: c.foundation,
				priority: c.priority,
				address: c.ip,
				ip: c.ip,
				protocol: c.protocol,
				port: c.port,
				type: c.type,
				...(c.tcpType ? { tcpType: c.tcpType } : {}),
			})),
			dtlsParameters: transport.dtlsParameters,
			connectTimeoutMs: signaling.transportConnectTimeoutMs,
		};
	}

	#findTransport(transportId: string): TransportEntry {
		this.#assertJoined();
		if (this.#transports.size === 0) throw new InvalidState('no transport yet: send createTransport first');
		const entry = this.#transports.get(transportId);
		if (!entry) throw new NotFound(`no transport ${transportId} on this connection`);
		return entry;
	}

	async #connectTransport(req: ParsedRequest<'connectTransport'>): Promise<ResultOf<'connectTransport'>> {
		const entry = this.#findTransport(req.transportId);
		if (entry.connectRequested) throw new InvalidState(`transport ${req.transportId} is already connected`);
		entry.connectRequested = true;
		try {
			await entry.transport.connect({ dtlsParameters: req.dtlsParameters });
		} catch (err) {
			entry.connectRequested = false;
			throw err;
		}
		return {};
	}

	async #consume(req: ParsedRequest<'consume'>): Promise<ResultOf<'consume'>> {
		const { name, generation } = this.#assertJoined();
		const entry = this.#findTransport(req.transportId);
		const router = this.#router;
		const producers = this.#ctx.routers.producers(name).filter((p) => !p.closed);
		if (!router || producers.length === 0 || !this.#ctx.isLive(name)) {
			throw new InvalidState(`stream ${name} is not live; wait for streamLive`);
		}
		const caps = req.rtpCapabilities as RtpCapabilities;
		const consuming = new Set(
			[...this.#consumers.values()].filter((c) => c.transportId === req.transportId).map((c) => c.consumer.producerId),
		);
		const created: ConsumerDescription[] = [];
		const missing: string[] = [];
		let notReady = 0;
		for (const producer of producers) {
			if (consuming.has(producer.id)) continue;
			const codec = producer.rtpParameters.codecs[0];
			if (!router.router.canConsume({ producerId: producer.id, rtpCapabilities: caps })) {
				// canConsume is also false for a producer not yet piped to this
				// router; only a codec mismatch is the client's problem.
				if (codec && !capabilitiesCover(codec, caps)) missing.push(`${producer.kind}: ${describeMissingCodec(codec, caps)}`);
				else notReady++;
				continue;
			}
			const consumer = await entry.transport.consume({
				producerId: producer.id,
				rtpCapabilities: caps,
				paused: true,
				appData: { connection: this.id },
			});
			if (this.#closed || this.#generation !== generation || entry.transport.closed) {
				consumer.close();
				throw new InvalidState('the transport or session closed meanwhile');
			}
			this.#addConsumer(consumer, entry);
			created.push({
				id: consumer.id,
				producerId: consumer.producerId,
				kind: consumer.kind,
				rtpParameters: consumer.rtpParameters,
				paused: true,
			});
		}
		if (created.length === 0 && missing.length > 0) {
			throw new Unsupported(`nothing in stream ${name} can be received: ${missing.join('; ')}`);
		}
		if (created.length === 0 && notReady > 0) {
			throw new InvalidState(`stream ${name} is still being set up; wait for streamLive`);
		}
		if (missing.length > 0) this.#log.info({ missing }, 'viewer receives only part of the stream');
		return { consumers: created };
	}

	#addConsumer(consumer: ms.Consumer, entry: TransportEntry): void {
		const transportId = entry.transport.id;
		this.#consumers.set(consumer.id, { consumer, transportId });
		consumer.observer.once('close', () => this.#consumers.delete(consumer.id));
		consumer.on('producerclose', () => {
			this.#consumers.delete(consumer.id);
			this.#emit('consumerClosed', { consumerId: consumer.id, reason: 'the publisher stopped' });
		});
	}

	async #resume(req: ParsedRequest<'resume'>): Promise<ResultOf<'resume'>> {
		this.#assertJoined();
		if (this.#consumers.size === 0) throw new InvalidState('nothing consumed yet: send consume first');
		const entry = this.#consumers.get(req.consumerId);
		if (!entry) throw new NotFound(`no consumer ${req.consumerId} on this connection`);
		const { consumer } = entry;
		await consumer.resume();
		// The first picture a viewer gets must be decodable; mediasoup asks too
		// when the transport connects, this covers a resume after that.
		if (consumer.kind === 'video') await consumer.requestKeyFrame().catch(() => undefined);
		return {};
	}

	#leave(): Promise<ResultOf<'leave'>> {
		this.#teardown('left');
		return Promise.resolve({});
	}

	// ---------------------------------------------------------------------
	// Events from the service

	/** The stream's producers are ready (first time, or after a restart/takeover). */
	onLive(): void {
		if (this.#closed || this.#streamName === null) return;
		this.#emit('streamLive', { stream: this.#streamName });
	}

	/** The stream's producers are gone: consumers go first, then the news. */
	onOffline(reason: string): void {
		if (this.#closed || this.#streamName === null) return;
		for (const { consumer } of [...this.#consumers.values()]) {
			this.#consumers.delete(consumer.id);
			consumer.close();
			this.#emit('consumerClosed', { consumerId: consumer.id, reason: 'the stream went offline' });
		}
		this.#emit('streamOffline', { stream: this.#streamName, reason });
	}

	/** Ends the session from the server side (admin); the client is told not to retry blindly. */
	kick(reason: string): void {
		if (this.#closed) return;
		this.#log.info({ reason }, 'viewer disconnected by the server');
		this.#emit('kicked', { reason });
		this.close();
		this.#socket.disconnect(true);
	}

	/** Closes everything the connection created; idempotent. */
	close(): void {
		if (this.#closed) return;
		this.#teardown('disconnected');
		this.#closed = true;
		this.#log.debug('viewer gone');
	}

	// ---------------------------------------------------------------------

	#emit<K extends keyof ServerToClientEvents>(event: K, ...args: Parameters<ServerToClientEvents[K]>): void {
		if (this.#closed) return;
		this.#socket.emit(event, ...args);
	}

	#clearConnectTimer(entry: TransportEntry): void {
		if (entry.connectTimer) clearTimeout(entry.connectTimer);
		entry.connectTimer = null;
	}

	/** Closes a transport; `reason` null closes it without telling the client. */
	#closeTransport(entry: TransportEntry, reason: string | null): void {
		if (entry.closeReason === undefined) entry.closeReason = reason;
		if (!entry.transport.closed) entry.transport.close();
	}

	#onTransportClosed(entry: TransportEntry): void {
		const id = entry.transport.id;
		this.#clearConnectTimer(entry);
		entry.slot.load -= 1;
		this.#transports.delete(id);
		for (const [cid, c] of this.#consumers) if (c.transportId === id) this.#consumers.delete(cid);
		// Closed from inside mediasoup (router or worker gone) when we set no reason.
		const reason = entry.closeReason === undefined ? 'the router closed (its worker died or the stream was removed)' : entry.closeReason;
		if (reason === null) return;
		this.#log.info({ transport: id, reason }, 'transport closed');
		this.#emit('transportClosed', { transportId: id, reason });
	}

	#teardown(why: string): void {
		const name = this.#streamName;
		this.#generation++;
		for (const { consumer } of this.#consumers.values()) consumer.close();
		this.#consumers.clear();
		for (const entry of [...this.#transports.values()]) this.#closeTransport(entry, null);
		this.#transports.clear();
		this.#release?.();
		this.#release = null;
		if (this.#router) this.#ctx.releaseRouter(this.#router);
		this.#router = null;
		this.#streamName = null;
		if (name !== null) {
			this.#ctx.detach(this, name);
			this.#log.info({ why }, 'viewer left');
			this.#log = this.#baseLog;
		}
	}
}
