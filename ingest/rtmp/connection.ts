import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { TypedEmitter } from '../../server/common/emitter.js';
import { BadRequest, Unsupported, errorBody, rtmpStatusOf, toSubsecondError } from '../../server/common/errors.js';
import type { Logger } from '../../server/common/logger.js';
import type { Publication, StreamRegistry } from '../../server/core/stream.js';
import { EcmaArray, decodeAmf0, encodeAmf0 } from './amf0.js';
import type { AmfObject, AmfValue } from './amf0.js';
import { ChunkReader, ChunkWriter } from './chunk.js';
import type { RtmpMessage } from './chunk.js';
import { FLV_TAG, FlvDemuxer } from './flv.js';
import { HANDSHAKE_SIZE, RTMP_VERSION, serverHandshake } from './handshake.js';
import { CSID, MSG, normalizeAddress, USER_CONTROL, setPeerBandwidthPayload, u32, userControlPayload } from './protocol.js';

export type RtmpProtocol = 'rtmp' | 'rtmps';
export type RtmpConnectionState = 'handshake' | 'handshake-c2' | 'connecting' | 'connected' | 'publishing' | 'closed';

/** Counters a connection adds to (its own, and the server's running totals). */
export interface RtmpCounters {
	bytesIn: number;
	/** Socket reads: bytesIn / reads is how well the input batches. */
	reads: number;
	bytesOut: number;
	messages: number;
	mediaMessages: number;
	/** Media or data messages not delivered: before publish, after unpublish, or malformed. */
	droppedMessages: number;
	malformedMessages: number;
}

export function newCounters(): RtmpCounters {
	return { bytesIn: 0, reads: 0, bytesOut: 0, messages: 0, mediaMessages: 0, droppedMessages: 0, malformedMessages: 0 };
}

/** Why input was refused or dropped, for the ingest error metric: a small, fixed set. */
export type RtmpErrorReason =
	| 'malformed'
	| 'unsupported_codec'
	| 'publish_refused'
	| 'protocol_error'
	| 'timeout'
	| 'max_connections'
	| 'tls_handshake';

export interface RtmpConnectionOptions {
	id: number;
	socket: Socket;
	protocol: RtmpProtocol;
	app: string;
	handshakeTimeoutMs: number;
	idleTimeoutMs: number;
	publishTimeoutMs: number;
	maxMessageSize: number;
	outChunkSize: number;
	registry: StreamRegistry;
	logger: Logger;
	/** The server's totals, added to alongside this connection's own counters. */
	totals: RtmpCounters;
	onError?: (protocol: RtmpProtocol, reason: RtmpErrorReason) => void;
}

export interface RtmpConnectionInfo {
	id: number;
	protocol: RtmpProtocol;
	remoteAddress: string;
	state: RtmpConnectionState;
	stream: string | null;
	connectedAt: string;
	handshake: 'plain' | 'digest' | null;
	counters: RtmpCounters;
}

export interface RtmpConnectionEvents extends Record<string, unknown[]> {
	close: [reason: string];
}

/** What we tell peers about ourselves, and how much we let them send before acknowledging. */
const WINDOW_ACK_SIZE = 5_000_000;
const PEER_BANDWIDTH = 5_000_000;
const FMS_VERSION = 'FMS/3,5,7,7009';
/** Distinct chunk stream ids per connection: encoders use a handful. */
const MAX_CHUNK_STREAMS = 64;
/** NetStreams per connection (createStream calls). */
const MAX_NET_STREAMS = 8;
/** Messages held while a publish is being authorized. */
const MAX_QUEUED_MESSAGES = 1024;
/** Malformed messages tolerated within GARBAGE_WINDOW_MS before the connection is closed. */
const MAX_GARBAGE = 20;
const GARBAGE_WINDOW_MS = 10_000;
/** Our replies are tiny; this much unsent means the peer stopped reading. */
const MAX_WRITE_BACKLOG = 1024 * 1024;
/** Metadata larger than this is ignored rather than kept on the stream. */
const MAX_METADATA_BYTES = 64 * 1024;
/** How long a closing connection may take to flush its last status message. */
const LINGER_MS = 1000;

function str(v: AmfValue): string | null {
	return typeof v === 'string' ? v : null;
}

function isAmfObject(v: AmfValue): v is AmfObject {
	return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date) && !(v instanceof EcmaArray);
}

/** `name?key=...` -> name and the key query parameter. */
function splitQuery(s: string): { path: string; key: string | null } {
	const q = s.indexOf('?');
	if (q === -1) return { path: s, key: null };
	const key = new URLSearchParams(s.slice(q + 1)).get('key');
	return { path: s.slice(0, q), key: key === '' ? null : key };
}

/**
 * Maps 32-bit RTMP timestamps onto a continuous millisecond timeline: steps
 * are taken as signed 32-bit differences, so a wrap after 49.7 days moves
 * forward and small backward steps (audio and video interleaving) stay small.
 */
export class TimestampUnwrapper {
	#lastRaw: number | null = null;
	#value = 0;

	unwrap(raw: number): number {
		const r = raw >>> 0;
		if (this.#lastRaw === null) {
			this.#value = r;
		} else {
			this.#value += (r - this.#lastRaw) | 0;
		}
		this.#lastRaw = r;
		return this.#value;
	}
}

/**
 * One RTMP (or RTMPS) client connection: handshake, chunk stream, commands
 * and, once `publish` is authorized, media into a Publication. Everything
 * runs synchronously off socket reads; nothing waits on the consumers of the
 * publication, so a slow consumer cannot slow the encoder.
 */
export class RtmpConnection extends TypedEmitter<RtmpConnectionEvents> {
	readonly id: number;
	readonly protocol: RtmpProtocol;
	readonly remoteAddress: string;
	readonly connectedAt = Date.now();
	readonly counters: RtmpCounters = newCounters();
	readonly #opts: RtmpConnectionOptions;
	readonly #socket: Socket;
	readonly #totals: RtmpCounters;
	#logger: Logger;
	#state: RtmpConnectionState = 'handshake';
	#handshakeKind: 'plain' | 'digest' | null = null;
	#hsBuffer: Buffer = Buffer.alloc(0);
	#handshakeTimer: NodeJS.Timeout | null;
	#publishTimer: NodeJS.Timeout | null = null;
	#lingerTimer: NodeJS.Timeout | null = null;
	readonly #reader: ChunkReader;
	readonly #writer = new ChunkWriter();
	/** performance.now() of the read being processed: when the last byte of its messages arrived. */
	#now = 0;
	#peerWindow = 0;
	#lastAck = 0;
	#connectKey: string | null = null;
	readonly #netStreams = new Set<number>();
	#nextStreamId = 1;
	#publishStreamId = 0;
	#streamName: string | null = null;
	#publication: Publication | null = null;
	#authorizing = false;
	#queued: RtmpMessage[] = [];
	#queuedBytes = 0;
	#metadata: Record<string, unknown> | null = null;
	#demuxer = new FlvDemuxer();
	#unwrapper = new TimestampUnwrapper();
	readonly #garbageTimes: number[] = [];
	#closed = false;

	constructor(opts: RtmpConnectionOptions) {
		super();
		this.#opts = opts;
		this.id = opts.id;
		this.protocol = opts.protocol;
		this.#socket = opts.socket;
		this.#totals = opts.totals;
		this.remoteAddress = normalizeAddress(opts.socket.remoteAddress);
		this.#logger = opts.logger;
		this.setListenerErrorLogger(this.#logger);
		this.#reader = new ChunkReader(
			{
				maxMessageSize: opts.maxMessageSize,
				maxChunkStreams: MAX_CHUNK_STREAMS,
				// Audio and commands may interleave with one maximal video message.
				maxPendingBytes: opts.maxMessageSize + 1024 * 1024,
			},
			(msg) => this.#onMessage(msg),
		);

		const socket = this.#socket;
		socket.setNoDelay(true);
		socket.setTimeout(opts.idleTimeoutMs);
		socket.on('timeout', () => {
			this.#reportError('timeout');
			this.close(`no data for ${opts.idleTimeoutMs} ms (idle timeout)`, false);
		});
		socket.on('data', (data: Buffer) => this.#onData(data));
		socket.on('error', (err) => {
			this.#logger.debug({ err }, 'socket error');
			this.close(`socket error: ${err.message}`, false);
		});
		socket.on('close', () => this.close('peer closed the connection', false));
		this.#handshakeTimer = setTimeout(() => {
			this.#reportError('timeout');
			this.close(`handshake not completed within ${opts.handshakeTimeoutMs} ms`, false);
		}, opts.handshakeTimeoutMs);
		this.#armPublishTimer();
	}

	/** Connections that do not publish would hold a slot forever by pinging: give them a deadline. */
	#armPublishTimer(): void {
		if (this.#publishTimer) clearTimeout(this.#publishTimer);
		const ms = this.#opts.publishTimeoutMs;
		this.#publishTimer = setTimeout(() => {
			this.#publishTimer = null;
			this.#reportError('timeout');
			this.close(`not publishing within ${ms} ms`);
		}, ms);
	}

	#clearPublishTimer(): void {
		if (this.#publishTimer) clearTimeout(this.#publishTimer);
		this.#publishTimer = null;
	}

	get state(): RtmpConnectionState {
		return this.#state;
	}

	get closed(): boolean {
		return this.#closed;
	}

	get streamName(): string | null {
		return this.#streamName;
	}

	get publication(): Publication | null {
		return this.#publication;
	}

	info(): RtmpConnectionInfo {
		return {
			id: this.id,
			protocol: this.protocol,
			remoteAddress: this.remoteAddress,
			state: this.#state,
			stream: this.#streamName,
			connectedAt: new Date(this.connectedAt).toISOString(),
			handshake: this.#handshakeKind,
			counters: { ...this.counters },
		};
	}

	// ---- input ------------------------------------------------------------

	#count(key: keyof RtmpCounters, n = 1): void {
		this.counters[key] += n;
		this.#totals[key] += n;
	}

	#reportError(reason: RtmpErrorReason): void {
		try {
			this.#opts.onError?.(this.protocol, reason);
		} catch (err) {
			this.#logger.error({ err }, 'error hook threw');
		}
	}

	#onData(data: Buffer): void {
		if (this.#closed) return;
		this.#now = performance.now();
		this.#count('bytesIn', data.length);
		this.#count('reads');
		try {
			if (this.#state === 'handshake' || this.#state === 'handshake-c2') {
				const rest = this.#handshake(data);
				if (rest && rest.length > 0) this.#reader.push(rest);
			} else {
				this.#reader.push(data);
			}
		} catch (err) {
			const e = toSubsecondError(err);
			this.#logger.warn({ err: e.message, code: e.code }, 'protocol error; closing');
			this.#reportError('protocol_error');
			this.close(`protocol error: ${e.message}`, false);
			return;
		}
		if (this.#closed) return;
		if (this.#peerWindow > 0 && this.counters.bytesIn - this.#lastAck >= this.#peerWindow) {
			this.#lastAck = this.counters.bytesIn;
			this.#send(CSID.CONTROL, MSG.ACK, 0, u32(this.counters.bytesIn % 0x100000000));
		}
	}

	/** Consumes handshake bytes; returns what follows C2 (the first chunks), if any. */
	#handshake(data: Buffer): Buffer | null {
		this.#hsBuffer = this.#hsBuffer.length === 0 ? data : Buffer.concat([this.#hsBuffer, data]);
		const buf = this.#hsBuffer;
		if (this.#state === 'handshake') {
			const version = buf[0];
			if (version !== undefined && version !== RTMP_VERSION) throw new BadRequest(this.#badVersion(version));
			if (buf.length < 1 + HANDSHAKE_SIZE) return null;
			const hs = serverHandshake(Buffer.from(buf.subarray(1, 1 + HANDSHAKE_SIZE)), Math.round(process.uptime() * 1000));
			this.#handshakeKind = hs.kind;
			this.#write(hs.response);
			this.#logger.debug({ handshake: hs.kind, scheme: hs.scheme }, 'handshake S0 S1 S2 sent');
			this.#hsBuffer = buf.subarray(1 + HANDSHAKE_SIZE);
			this.#state = 'handshake-c2';
		}
		if (this.#hsBuffer.length < HANDSHAKE_SIZE) return null;
		// C2 is not checked: clients fill it in incompatible ways, and it proves nothing we rely on.
		const rest = this.#hsBuffer.subarray(HANDSHAKE_SIZE);
		this.#hsBuffer = Buffer.alloc(0);
		this.#state = 'connecting';
		if (this.#handshakeTimer) clearTimeout(this.#handshakeTimer);
		this.#handshakeTimer = null;
		return rest;
	}

	#badVersion(version: number): string {
		if (version === 6 || version === 8 || version === 9) return 'RTMPE (encrypted RTMP) is not supported; use RTMPS';
		if (version === 0x16) return 'a TLS client on the plain RTMP port; use the RTMPS port for rtmps://';
		if (version >= 0x41 && version <= 0x5a) return 'not an RTMP client (this looks like text, e.g. HTTP)';
		return `unsupported RTMP version ${version} (only 3 is defined)`;
	}

	#onMessage(msg: RtmpMessage): void {
		if (this.#closed) return;
		this.#count('messages');
		switch (msg.type) {
			case MSG.SET_CHUNK_SIZE: {
				const size = this.#u32(msg, 'Set Chunk Size');
				this.#reader.setChunkSize(size);
				this.#logger.debug({ chunkSize: size }, 'peer chunk size');
				return;
			}
			case MSG.ABORT:
				this.#reader.abort(this.#u32(msg, 'Abort'));
				return;
			case MSG.ACK:
				return;
			case MSG.WINDOW_ACK_SIZE:
				// Counted from the last acknowledgement (or the start), not from this message.
				this.#peerWindow = this.#u32(msg, 'Window Acknowledgement Size');
				return;
			case MSG.SET_PEER_BANDWIDTH:
				// We send a few small messages; there is nothing to throttle.
				return;
			case MSG.USER_CONTROL:
				this.#onUserControl(msg);
				return;
			default:
				break;
		}
		if (this.#authorizing) {
			this.#enqueue(msg);
			return;
		}
		this.#dispatch(msg);
	}

	#u32(msg: RtmpMessage, what: string): number {
		if (msg.payload.length < 4) throw new BadRequest(`${what} message of ${msg.payload.length} bytes`);
		return msg.payload.readUInt32BE(0);
	}

	#onUserControl(msg: RtmpMessage): void {
		if (msg.payload.length < 2) throw new BadRequest('user control message without an event type');
		const event = msg.payload.readUInt16BE(0);
		if (event === USER_CONTROL.PING_REQUEST) {
			const value = msg.payload.length >= 6 ? msg.payload.readUInt32BE(2) : 0;
			this.#send(CSID.CONTROL, MSG.USER_CONTROL, 0, userControlPayload(USER_CONTROL.PING_RESPONSE, value));
		}
	}

	#enqueue(msg: RtmpMessage): void {
		if (this.#queued.length >= MAX_QUEUED_MESSAGES || this.#queuedBytes + msg.payload.length > this.#opts.maxMessageSize * 2) {
			this.#count('droppedMessages');
			return;
		}
		// Payloads may be views of receive buffers: keep copies.
		this.#queued.push({ ...msg, payload: Buffer.from(msg.payload) });
		this.#queuedBytes += msg.payload.length;
	}

	#dispatch(msg: RtmpMessage): void {
		switch (msg.type) {
			case MSG.AUDIO:
			case MSG.VIDEO:
				this.#onMedia(msg);
				return;
			case MSG.DATA_AMF0:
			case MSG.DATA_AMF3:
				this.#onDataMessage(msg);
				return;
			case MSG.COMMAND_AMF0:
			case MSG.COMMAND_AMF3:
				this.#onCommand(msg);
				return;
			case MSG.AGGREGATE:
				this.#onAggregate(msg);
				return;
			default:
				// Shared objects and unknown types: nothing an encoder needs answered.
				this.#logger.debug({ type: msg.type }, 'ignored message type');
		}
	}

	/** Counts a malformed message; too many in a short time close the connection. */
	#garbage(what: string, err: unknown): void {
		const e = toSubsecondError(err);
		this.#count('malformedMessages');
		this.#reportError('malformed');
		const now = Date.now();
		this.#garbageTimes.push(now);
		while (this.#garbageTimes.length > 0 && now - (this.#garbageTimes[0] ?? now) > GARBAGE_WINDOW_MS) this.#garbageTimes.shift();
		const total = this.counters.malformedMessages;
		if (total <= 5 || total % 100 === 0) this.#logger.warn({ err: e.message, total }, `malformed ${what} dropped`);
		if (this.#garbageTimes.length > MAX_GARBAGE) {
			this.close(`more than ${MAX_GARBAGE} malformed messages within ${GARBAGE_WINDOW_MS / 1000} s (last: ${e.message})`);
		}
	}

	// ---- commands -----------------------------------------------------------

	#onCommand(msg: RtmpMessage): void {
		// AMF3 command messages start with a format byte, then (from encoders) AMF0 values.
		const payload = msg.type === MSG.COMMAND_AMF3 ? msg.payload.subarray(1) : msg.payload;
		let values: AmfValue[];
		try {
			values = decodeAmf0(payload);
		} catch (err) {
			this.#garbage('command', err);
			return;
		}
		const name = str(values[0] ?? null);
		if (name === null) {
			this.#garbage('command', new BadRequest('command message without a command name'));
			return;
		}
		const txn = typeof values[1] === 'number' && Number.isFinite(values[1]) ? values[1] : 0;
		const args = values.slice(3);
		if (name !== 'connect' && this.#state === 'connecting') {
			this.close(`'${name}' before connect`);
			return;
		}
		switch (name) {
			case 'connect':
				this.#onConnect(txn, values[2] ?? null);
				return;
			case 'createStream':
				this.#onCreateStream(txn);
				return;
			case 'releaseStream':
				this.#result(txn, null);
				return;
			case 'FCPublish':
				this.#result(txn, null);
				this.#command(0, 'onFCPublish', 0, null, { code: 'NetStream.Publish.Start', description: str(args[0] ?? null) ?? '' });
				return;
			case 'publish':
				this.#onPublish(msg.streamId, args[0] ?? null);
				return;
			case 'FCUnpublish':
				this.#unpublish('publisher unpublished (FCUnpublish)');
				this.#result(txn, null);
				this.#command(0, 'onFCUnpublish', 0, null, { code: 'NetStream.Unpublish.Success', description: str(args[0] ?? null) ?? '' });
				return;
			case 'deleteStream': {
				const id = typeof args[0] === 'number' ? args[0] : msg.streamId;
				if (id === this.#publishStreamId) this.#unpublish('publisher deleted its stream');
				this.#netStreams.delete(id);
				return;
			}
			case 'closeStream':
				if (msg.streamId === this.#publishStreamId) this.#unpublish('publisher closed its stream');
				return;
			case 'play':
			case 'play2':
				this.#status(msg.streamId, 'error', 'NetStream.Play.Failed', 'this server only ingests (publish); watch streams over WebRTC or HLS');
				this.close(`refused '${name}': ingest only`);
				return;
			case 'getStreamLength':
				this.#result(txn, null, 0);
				return;
			case 'checkbw':
			case '_checkbw':
				this.#result(txn, null);
				return;
			case '_result':
			case '_error':
			case 'onStatus':
			case 'onBWDone':
			case '_onbwcheck':
			case '_onbwdone':
			case 'receiveAudio':
			case 'receiveVideo':
				return;
			default:
				this.#logger.debug({ command: name }, 'unknown command');
				if (txn > 0) {
					this.#command(0, '_error', txn, null, {
						level: 'error',
						code: 'NetConnection.Call.Failed',
						description: `unknown command '${name.slice(0, 64)}'`,
					});
				}
		}
	}

	#onConnect(txn: number, cmd: AmfValue): void {
		if (this.#state !== 'connecting') {
			this.#command(0, '_error', txn, null, { level: 'error', code: 'NetConnection.Connect.Rejected', description: 'already connected' });
			return;
		}
		const obj = isAmfObject(cmd) ? cmd : {};
		const rawApp = str(obj.app ?? null) ?? '';
		const tcUrl = str(obj.tcUrl ?? null) ?? '';
		// librtmp puts the tcUrl query into app: `live?key=...`.
		const { path, key } = splitQuery(rawApp);
		const app = path.replace(/^\/+|\/+$/g, '');
		let tcKey: string | null = null;
		if (tcUrl.includes('?')) tcKey = splitQuery(tcUrl).key;
		this.#connectKey = key ?? tcKey;
		if (app !== this.#opts.app) {
			const description = `unknown application '${app.slice(0, 64)}': publish to rtmp://HOST:PORT/${this.#opts.app} with stream key NAME`;
			this.#command(0, '_error', txn, null, { level: 'error', code: 'NetConnection.Connect.Rejected', description });
			this.#logger.warn({ app }, 'connect to an unknown application refused');
			this.close(`refused connect: unknown application '${app.slice(0, 64)}'`);
			return;
		}
		this.#send(CSID.CONTROL, MSG.WINDOW_ACK_SIZE, 0, u32(WINDOW_ACK_SIZE));
		this.#send(CSID.CONTROL, MSG.SET_PEER_BANDWIDTH, 0, setPeerBandwidthPayload(PEER_BANDWIDTH, 2));
		this.#send(CSID.CONTROL, MSG.SET_CHUNK_SIZE, 0, u32(this.#opts.outChunkSize));
		this.#writer.setChunkSize(this.#opts.outChunkSize);
		this.#command(
			0,
			'_result',
			txn,
			{ fmsVer: FMS_VERSION, capabilities: 31, mode: 1 },
			{ level: 'status', code: 'NetConnection.Connect.Success', description: 'Connection succeeded.', objectEncoding: 0 },
		);
		this.#state = 'connected';
		this.#logger.debug({ app, flashVer: str(obj.flashVer ?? null), tcUrl: tcUrl.replace(/\?.*$/, '') }, 'connected');
	}

	#onCreateStream(txn: number): void {
		if (this.#netStreams.size >= MAX_NET_STREAMS) {
			this.#command(0, '_error', txn, null, {
				level: 'error',
				code: 'NetConnection.Call.Failed',
				description: `at most ${MAX_NET_STREAMS} streams per connection`,
			});
			return;
		}
		const id = this.#nextStreamId++;
		this.#netStreams.add(id);
		this.#result(txn, null, id);
	}

	#onPublish(streamId: number, rawName: AmfValue): void {
		if (this.#publication || this.#authorizing) {
			this.#status(streamId, 'error', 'NetStream.Publish.BadName', `this connection already publishes ${this.#streamName ?? ''}`);
			return;
		}
		const { path: name, key } = splitQuery(str(rawName) ?? '');
		if (name === '') {
			this.#refusePublish(streamId, new BadRequest('publish without a stream name: set the stream key to NAME or NAME?key=SECRET'));
			return;
		}
		this.#streamName = name;
		this.#publishStreamId = streamId;
		this.#logger = this.#logger.child({ stream: name });
		this.#authorizing = true;
		const request = { stream: name, key: key ?? this.#connectKey, protocol: this.protocol, remoteAddress: this.remoteAddress };
		// Guards may be asynchronous (webhooks); what arrives meanwhile is queued.
		this.#opts.registry
			.authorizePublish(request)
			.then(
				() => this.#startPublishing(streamId, name),
				(err: unknown) => {
					this.#authorizing = false;
					this.#refusePublish(streamId, err);
				},
			)
			.catch((err: unknown) => {
				// A bug on this path must cost this connection, never the process.
				this.#logger.error({ err }, 'error while starting to publish');
				this.close('internal error while starting to publish', false);
			});
	}

	#startPublishing(streamId: number, name: string): void {
		this.#authorizing = false;
		if (this.#closed) return;
		let pub: Publication;
		try {
			pub = this.#opts.registry.publish(name, {
				protocol: this.protocol,
				remoteAddress: this.remoteAddress,
				kick: (reason) => this.#kicked(reason),
			});
		} catch (err) {
			this.#refusePublish(streamId, err);
			return;
		}
		this.#publication = pub;
		this.#state = 'publishing';
		this.#clearPublishTimer();
		this.#demuxer = new FlvDemuxer();
		this.#unwrapper = new TimestampUnwrapper();
		pub.once('end', (reason) => {
			if (this.#publication !== pub) return;
			this.#publication = null;
			// Ended from elsewhere (admin, shutdown): the encoder must learn it is off air.
			if (!this.#closed && this.#state === 'publishing') this.close(`publication ended: ${reason}`);
		});
		this.#send(CSID.CONTROL, MSG.USER_CONTROL, 0, userControlPayload(USER_CONTROL.STREAM_BEGIN, streamId));
		this.#status(streamId, 'status', 'NetStream.Publish.Start', `${name} is now published`, { details: name });
		this.#logger.info({ handshake: this.#handshakeKind }, 'publishing');
		if (this.#metadata) pub.setMetadata(this.#metadata);
		const queued = this.#queued;
		this.#queued = [];
		this.#queuedBytes = 0;
		for (const msg of queued) {
			if (this.#closed) return;
			this.#dispatch(msg);
		}
	}

	#refusePublish(streamId: number, err: unknown): void {
		if (this.#closed) return;
		const body = errorBody(err);
		this.#status(streamId, 'error', rtmpStatusOf(err), body.message);
		this.#logger.warn({ code: body.code, reason: body.message }, 'publish refused');
		this.#reportError('publish_refused');
		this.close(`publish refused: ${body.message}`);
	}

	#unpublish(reason: string): void {
		const pub = this.#publication;
		if (!pub) return;
		this.#publication = null;
		this.#state = 'connected';
		this.#armPublishTimer();
		this.#logger.info({ reason }, 'unpublished');
		pub.end(reason);
	}

	/** The registry ends this publication (takeover, admin kick, shutdown). */
	#kicked(reason: string): void {
		if (this.#closed) return;
		// Level error: encoders print it (ffmpeg: "Server error: ..."), so the operator sees why.
		this.#status(this.#publishStreamId, 'error', 'NetConnection.Connect.Closed', `stopped by the server: ${reason}`);
		this.#publication = null;
		this.close(reason);
	}

	// ---- media and data ---------------------------------------------------------

	#onMedia(msg: RtmpMessage): void {
		this.#count('mediaMessages');
		const pub = this.#publication;
		if (!pub || pub.ended) {
			this.#count('droppedMessages');
			return;
		}
		const ts = this.#unwrapper.unwrap(msg.timestamp);
		try {
			const ev = msg.type === FLV_TAG.VIDEO ? this.#demuxer.video(ts, msg.payload, this.#now) : this.#demuxer.audio(ts, msg.payload, this.#now);
			switch (ev.type) {
				case 'videoConfig':
					pub.setVideoConfig(ev.config);
					break;
				case 'audioConfig':
					pub.setAudioConfig(ev.config);
					break;
				case 'video':
					pub.pushVideo(ev.frame);
					break;
				case 'audio':
					pub.pushAudio(ev.frame);
					break;
				case 'none':
					break;
			}
		} catch (err) {
			this.#count('droppedMessages');
			if (err instanceof Unsupported) {
				this.#rejectMedia(err);
				return;
			}
			this.#garbage(msg.type === FLV_TAG.VIDEO ? 'video message' : 'audio message', err);
		}
	}

	/** A codec we do not take: tell the encoder why, end the stream, hang up. */
	#rejectMedia(err: Unsupported): void {
		this.#status(this.#publishStreamId, 'error', rtmpStatusOf(err), err.message);
		this.#logger.warn({ reason: err.message }, 'publish rejected');
		this.#reportError('unsupported_codec');
		const pub = this.#publication;
		this.#publication = null;
		pub?.end(`rejected: ${err.message}`);
		this.close(`rejected: ${err.message}`);
	}

	#onDataMessage(msg: RtmpMessage): void {
		const payload = msg.type === MSG.DATA_AMF3 ? msg.payload.subarray(1) : msg.payload;
		let values: AmfValue[];
		try {
			values = decodeAmf0(payload);
		} catch (err) {
			this.#count('droppedMessages');
			this.#garbage('data message', err);
			return;
		}
		let name = str(values[0] ?? null);
		let data = values[1] ?? null;
		if (name === '@setDataFrame') {
			name = str(values[1] ?? null);
			data = values[2] ?? null;
		}
		if (name !== 'onMetaData') return;
		if (!isAmfObject(data) || payload.length > MAX_METADATA_BYTES) {
			this.#count('droppedMessages');
			return;
		}
		this.#metadata = data;
		const pub = this.#publication;
		if (pub && !pub.ended) pub.setMetadata(this.#metadata);
	}

	/** An aggregate message: FLV tags back to back, timed relative to the first. */
	#onAggregate(msg: RtmpMessage): void {
		const buf = msg.payload;
		let off = 0;
		let base: number | null = null;
		while (off < buf.length && !this.#closed) {
			if (off + 11 > buf.length) {
				this.#garbage('aggregate message', new BadRequest('aggregate sub-message header truncated'));
				return;
			}
			const type = buf[off] ?? 0;
			const size = buf.readUIntBE(off + 1, 3);
			const ts = (buf.readUIntBE(off + 4, 3) | ((buf[off + 7] ?? 0) << 24)) >>> 0;
			const end = off + 11 + size;
			if (end > buf.length) {
				this.#garbage('aggregate message', new BadRequest('aggregate sub-message overruns the message'));
				return;
			}
			base ??= ts;
			if (type === MSG.AUDIO || type === MSG.VIDEO || type === MSG.DATA_AMF0) {
				this.#dispatch({
					csid: msg.csid,
					type,
					streamId: msg.streamId,
					timestamp: (msg.timestamp + ts - base) >>> 0,
					payload: buf.subarray(off + 11, end),
				});
			}
			off = end + 4; // back pointer (previous tag size)
		}
	}

	// ---- output -------------------------------------------------------------

	#write(buf: Buffer): void {
		if (this.#socket.destroyed || this.#socket.writableEnded) return;
		this.#count('bytesOut', buf.length);
		this.#socket.write(buf);
		if (this.#socket.writableLength > MAX_WRITE_BACKLOG) {
			this.close('peer does not read what we send', false);
		}
	}

	#send(csid: number, type: number, streamId: number, payload: Buffer): void {
		this.#write(this.#writer.encode(csid, type, streamId, 0, payload));
	}

	#command(streamId: number, ...values: AmfValue[]): void {
		this.#send(CSID.COMMAND, MSG.COMMAND_AMF0, streamId, encodeAmf0(...values));
	}

	#result(txn: number, ...values: AmfValue[]): void {
		if (txn > 0) this.#command(0, '_result', txn, ...values);
	}

	#status(streamId: number, level: 'status' | 'error', code: string, description: string, extra: AmfObject = {}): void {
		this.#command(streamId, 'onStatus', 0, null, { level, code, description, ...extra });
	}

	// ---- lifecycle ------------------------------------------------------------

	/**
	 * Closes the connection and ends its publication. With `flush`, what we
	 * wrote last (a status message explaining why) gets a moment to reach the
	 * peer before the socket is destroyed. Idempotent.
	 */
	close(reason: string, flush = true): void {
		if (this.#closed) {
			if (!flush) this.#socket.destroy();
			return;
		}
		this.#closed = true;
		const wasPublishing = this.#state === 'publishing';
		this.#state = 'closed';
		if (this.#handshakeTimer) clearTimeout(this.#handshakeTimer);
		this.#handshakeTimer = null;
		this.#clearPublishTimer();
		this.#reader.stop();
		this.#queued = [];
		const pub = this.#publication;
		this.#publication = null;
		pub?.end(reason);
		if (flush && !this.#socket.destroyed) {
			this.#socket.end();
			this.#lingerTimer = setTimeout(() => this.#socket.destroy(), LINGER_MS);
			this.#socket.once('close', () => {
				if (this.#lingerTimer) clearTimeout(this.#lingerTimer);
			});
		} else {
			this.#socket.destroy();
		}
		const c = this.counters;
		this.#logger[wasPublishing ? 'info' : 'debug'](
			{ reason, bytesIn: c.bytesIn, messages: c.messages, dropped: c.droppedMessages, malformed: c.malformedMessages },
			'connection closed',
		);
		this.emit('close', reason);
		this.removeAllListeners();
	}
}
