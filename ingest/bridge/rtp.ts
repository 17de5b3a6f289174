import { randomInt } from 'node:crypto';
import { BadRequest } from '../../server/common/errors.js';

export const RTP_HEADER_SIZE = 12;
/**
 * config.streams.rtpMtu counts whole IP packets: an IPv4 header (20) and a
 * UDP header (8) come on top of the RTP packet.
 */
export const IP_UDP_OVERHEAD = 28;

/** Largest RTP payload for an MTU that counts IP and UDP headers. */
export function maxRtpPayload(mtu: number): number {
	return mtu - IP_UDP_OVERHEAD - RTP_HEADER_SIZE;
}

/** A random 32-bit value that is never 0 (some stacks treat SSRC 0 as unset). */
export function randomSsrc(): number {
	return randomInt(1, 0xffffffff);
}

export interface RtpHeader {
	version: number;
	padding: boolean;
	marker: boolean;
	payloadType: number;
	sequenceNumber: number;
	timestamp: number;
	ssrc: number;
	/** Where the payload starts (after CSRCs and the header extension). */
	payloadOffset: number;
	/** Where the payload ends (before padding). */
	payloadEnd: number;
}

/** Parses an RTP header; throws BadRequest on anything that is not one. */
export function parseRtpHeader(buf: Buffer): RtpHeader {
	if (buf.length < RTP_HEADER_SIZE) throw new BadRequest('RTP packet shorter than its header');
	const b0 = buf[0] ?? 0;
	const version = b0 >> 6;
	if (version !== 2) throw new BadRequest(`RTP version ${version} is not 2`);
	const padding = (b0 & 0x20) !== 0;
	const extension = (b0 & 0x10) !== 0;
	const csrcCount = b0 & 0x0f;
	const b1 = buf[1] ?? 0;
	let off = RTP_HEADER_SIZE + csrcCount * 4;
	if (extension) {
		if (off + 4 > buf.length) throw new BadRequest('RTP header extension truncated');
		off += 4 + buf.readUInt16BE(off + 2) * 4;
	}
	let end = buf.length;
	if (padding) end -= buf[buf.length - 1] ?? 0;
	if (off > end) throw new BadRequest('RTP header overruns the packet');
	return {
		version,
		padding,
		marker: (b1 & 0x80) !== 0,
		payloadType: b1 & 0x7f,
		sequenceNumber: buf.readUInt16BE(2),
		timestamp: buf.readUInt32BE(4),
		ssrc: buf.readUInt32BE(8),
		payloadOffset: off,
		payloadEnd: end,
	};
}

export interface RtpSenderOptions {
	ssrc?: number;
	payloadType: number;
	clockRate: number;
	/** Largest RTP packet, header included. */
	maxPacketSize: number;
	/** Sent packets kept for retransmission on NACK (and buffer reuse). */
	historySize?: number;
	initialSequenceNumber?: number;
	timestampBase?: number;
}

/** Counters of one RTP stream, as RTCP sender reports and metrics need them. */
export interface RtpSenderStats {
	packets: number;
	/** Payload octets (RTCP's "sender's octet count"). */
	payloadBytes: number;
	/** Whole RTP packets, headers included. */
	bytes: number;
	retransmitted: number;
	/** NACKed packets no longer in the history. */
	retransmitMisses: number;
}

export type PacketSink = (packet: Buffer) => void;

const TWO_32 = 0x1_0000_0000;

/**
 * One outgoing RTP stream: SSRC, sequence numbers, timestamps and counters.
 * Packets are written straight into a ring of pre-allocated buffers that is
 * also the retransmission history, so the hot path allocates nothing.
 *
 * A ring slot is reused `historySize` packets later. dgram sends on loopback
 * complete synchronously or within microseconds, long before that.
 */
export class RtpSender {
	readonly ssrc: number;
	readonly payloadType: number;
	readonly clockRate: number;
	readonly maxPacketSize: number;
	readonly stats: RtpSenderStats = { packets: 0, payloadBytes: 0, bytes: 0, retransmitted: 0, retransmitMisses: 0 };
	readonly #timestampBase: number;
	readonly #ring: Buffer[];
	readonly #ringSeq: Int32Array;
	readonly #ringLen: Uint16Array;
	#slot = 0;
	#seq: number;
	#sink: PacketSink | null = null;
	#lastTimestamp = 0;

	constructor(opts: RtpSenderOptions) {
		if (opts.maxPacketSize < RTP_HEADER_SIZE + 16) throw new RangeError('maxPacketSize too small');
		this.ssrc = opts.ssrc ?? randomSsrc();
		this.payloadType = opts.payloadType;
		this.clockRate = opts.clockRate;
		this.maxPacketSize = opts.maxPacketSize;
		this.#seq = (opts.initialSequenceNumber ?? randomInt(0, 0x8000)) & 0xffff;
		this.#timestampBase = opts.timestampBase ?? randomInt(0, 0x7fffffff);
		const n = opts.historySize ?? 512;
		this.#ring = Array.from({ length: n }, () => Buffer.alloc(opts.maxPacketSize));
		this.#ringSeq = new Int32Array(n).fill(-1);
		this.#ringLen = new Uint16Array(n);
	}

	/** Where packets go (a connected UDP socket); null drops them. */
	setSink(sink: PacketSink | null): void {
		this.#sink = sink;
	}

	get nextSequenceNumber(): number {
		return this.#seq;
	}

	/** RTP timestamp of the last packet sent. */
	get lastTimestamp(): number {
		return this.#lastTimestamp;
	}

	/** The RTP timestamp of a publisher time in ms (32-bit wrap). */
	timestampOf(ms: number): number {
		const t = this.#timestampBase + Math.round((ms * this.clockRate) / 1000);
		return ((t % TWO_32) + TWO_32) % TWO_32;
	}

	/**
	 * The buffer the next packet is written into; the payload starts at
	 * RTP_HEADER_SIZE and may take maxPacketSize - RTP_HEADER_SIZE bytes.
	 * Call commit() to send it.
	 */
	next(): Buffer {
		return this.#ring[this.#slot] as Buffer;
	}

	/** Writes the header into the buffer from next() and sends the packet. */
	commit(payloadLength: number, marker: boolean, timestamp: number): void {
		const slot = this.#slot;
		const buf = this.#ring[slot] as Buffer;
		const len = RTP_HEADER_SIZE + payloadLength;
		if (len > this.maxPacketSize) throw new RangeError(`RTP packet of ${len} bytes exceeds ${this.maxPacketSize}`);
		const seq = this.#seq;
		buf[0] = 0x80;
		buf[1] = (marker ? 0x80 : 0) | this.payloadType;
		buf.writeUInt16BE(seq, 2);
		buf.writeUInt32BE(timestamp >>> 0, 4);
		buf.writeUInt32BE(this.ssrc, 8);
		this.#ringSeq[slot] = seq;
		this.#ringLen[slot] = len;
		this.#slot = (slot + 1) % this.#ring.length;
		this.#seq = (seq + 1) & 0xffff;
		this.#lastTimestamp = timestamp >>> 0;
		const s = this.stats;
		s.packets++;
		s.payloadBytes += payloadLength;
		s.bytes += len;
		this.#sink?.(buf.subarray(0, len));
	}

	/** Copies a whole payload into the next packet and sends it. */
	sendPayload(payload: Buffer, marker: boolean, timestamp: number): void {
		const buf = this.next();
		if (RTP_HEADER_SIZE + payload.length > buf.length) {
			throw new RangeError(`RTP payload of ${payload.length} bytes exceeds the packet size`);
		}
		payload.copy(buf, RTP_HEADER_SIZE);
		this.commit(payload.length, marker, timestamp);
	}

	/** Sends a packet again (NACK); false if it left the history. */
	retransmit(seq: number): boolean {
		const n = this.#ring.length;
		// Walk back from the newest slot: the one holding `seq`, if any, is seq-distance back.
		const back = (this.#seq - seq - 1 + 0x10000) & 0xffff;
		if (back >= n) {
			this.stats.retransmitMisses++;
			return false;
		}
		const slot = (this.#slot - 1 - back + n * 2) % n;
		if (this.#ringSeq[slot] !== seq) {
			this.stats.retransmitMisses++;
			return false;
		}
		const buf = this.#ring[slot] as Buffer;
		this.stats.retransmitted++;
		this.#sink?.(buf.subarray(0, this.#ringLen[slot]));
		return true;
	}
}
