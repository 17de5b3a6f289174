import dgram from 'node:dgram';
import type { types } from 'mediasoup';
import type { Logger } from '../../server/common/logger.js';
import type { RtcpFeedback } from './rtcp.js';
import { isRtcp, parseRtcp } from './rtcp.js';

export type PlainTransport = types.PlainTransport;
export type Producer = types.Producer;
export type Router = types.Router;
export type RtpParameters = types.RtpParameters;

export interface PlainLinkOptions {
	router: Router;
	kind: 'audio' | 'video';
	rtpParameters: RtpParameters;
	logger: Logger;
	/** RTCP from mediasoup about what we send: PLI, FIR, NACK, RR. */
	onRtcp: (feedback: RtcpFeedback[]) => void;
	appData?: Record<string, unknown>;
}

export interface PlainLinkStats {
	rtcpPackets: number;
	rtcpMalformed: number;
	sendErrors: number;
}

function bindUdp(): Promise<dgram.Socket> {
	return new Promise((resolve, reject) => {
		const socket = dgram.createSocket('udp4');
		socket.once('error', reject);
		socket.bind(0, '127.0.0.1', () => {
			socket.off('error', reject);
			resolve(socket);
		});
	});
}

function connectUdp(socket: dgram.Socket, port: number): Promise<void> {
	return new Promise((resolve, reject) => {
		socket.once('error', reject);
		socket.connect(port, '127.0.0.1', () => {
			socket.off('error', reject);
			resolve();
		});
	});
}

/**
 * One producer's way into mediasoup: a UDP socket of ours, connected to a
 * PlainTransport (rtcp-mux, no comedia) on the origin router, which is
 * connected back to the socket. RTP goes one way; RTCP feedback about it
 * (keyframe requests, NACKs, receiver reports) comes back the same way.
 */
export class PlainLink {
	readonly kind: 'audio' | 'video';
	readonly transport: PlainTransport;
	readonly producer: Producer;
	readonly stats: PlainLinkStats = { rtcpPackets: 0, rtcpMalformed: 0, sendErrors: 0 };
	readonly #socket: dgram.Socket;
	readonly #logger: Logger;
	#closed = false;

	private constructor(kind: 'audio' | 'video', socket: dgram.Socket, transport: PlainTransport, producer: Producer, logger: Logger) {
		this.kind = kind;
		this.#socket = socket;
		this.transport = transport;
		this.producer = producer;
		this.#logger = logger;
	}

	static async create(opts: PlainLinkOptions): Promise<PlainLink> {
		const socket = await bindUdp();
		let transport: PlainTransport | null = null;
		try {
			transport = await opts.router.createPlainTransport({
				listenIp: '127.0.0.1',
				rtcpMux: true,
				comedia: false,
				appData: { bridge: true, kind: opts.kind, ...opts.appData },
			});
			await transport.connect({ ip: '127.0.0.1', port: socket.address().port });
			await connectUdp(socket, transport.tuple.localPort);
			const producer = await transport.produce({
				kind: opts.kind,
				rtpParameters: opts.rtpParameters,
				appData: { bridge: true, ...opts.appData },
			});
			const link = new PlainLink(opts.kind, socket, transport, producer, opts.logger);
			socket.on('message', (msg) => link.#onMessage(msg, opts.onRtcp));
			// ECONNREFUSED and the like after the transport went away: counted, never thrown.
			socket.on('error', (err) => {
				link.stats.sendErrors++;
				if (link.stats.sendErrors === 1) opts.logger.debug({ err, kind: opts.kind }, 'bridge socket error');
			});
			transport.observer.once('close', () => link.close());
			return link;
		} catch (err) {
			transport?.close();
			socket.close();
			throw err;
		}
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** Sends one packet to mediasoup (RTP or RTCP). */
	readonly send = (packet: Buffer): void => {
		if (this.#closed) return;
		this.#socket.send(packet);
	};

	#onMessage(msg: Buffer, onRtcp: (feedback: RtcpFeedback[]) => void): void {
		if (this.#closed || !isRtcp(msg)) return;
		this.stats.rtcpPackets++;
		let fb: RtcpFeedback[];
		try {
			fb = parseRtcp(msg);
		} catch {
			this.stats.rtcpMalformed++;
			return;
		}
		onRtcp(fb);
	}

	/** Closes the producer, the transport and the socket. Idempotent. */
	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		if (!this.producer.closed) this.producer.close();
		if (!this.transport.closed) this.transport.close();
		try {
			this.#socket.close();
		} catch {
			// already closed
		}
		this.#logger.debug({ kind: this.kind }, 'bridge link closed');
	}
}
