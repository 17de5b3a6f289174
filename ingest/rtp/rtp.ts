/**
 * RTP (RFC 3550) and the few RTCP packets plain RTP ingest needs: sender
 * reports and BYE in, receiver reports and PLI (RFC 4585) out. Parsers take
 * untrusted datagrams: they validate every length and return a reason instead
 * of throwing, because a bad packet is counted and dropped, never an error.
 */

/** One RTP packet. `payload` is a view into the datagram (no copy). */
export interface RtpPacket {
	payloadType: number;
	marker: boolean;
	sequenceNumber: number;
	timestamp: number;
	ssrc: number;
	csrcCount: number;
	/** Header extension profile (0xBEDE for one-byte RFC 8285 extensions), null if none. */
	extensionProfile: number | null;
	payload: Buffer;
	/** Padding bytes removed from the end. */
	padding: number;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: string };

const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

/**
 * RFC 5761 demultiplexing on an rtcp-mux port: RTCP packet types 192..223 in
 * the second byte (RTP with those values would need payload types 64..95,
 * which RFC 5761 forbids for this reason).
 */
export function looksLikeRtcp(buf: Buffer): boolean {
	const b = buf[1];
	return buf.length >= 2 && b !== undefined && b >= 192 && b <= 223;
}

export function parseRtp(buf: Buffer): ParseResult<RtpPacket> {
	if (buf.length < 12) return fail('shorter than an RTP header');
	const b0 = buf[0] ?? 0;
	const b1 = buf[1] ?? 0;
	const version = b0 >> 6;
	if (version !== 2) return fail(`RTP version ${version}`);
	const hasPadding = (b0 & 0x20) !== 0;
	const hasExtension = (b0 & 0x10) !== 0;
	const csrcCount = b0 & 0x0f;
	let offset = 12 + csrcCount * 4;
	if (offset > buf.length) return fail(`${csrcCount} CSRCs overrun the packet`);
	let extensionProfile: number | null = null;
	if (hasExtension) {
		if (offset + 4 > buf.length) return fail('header extension truncated');
		extensionProfile = buf.readUInt16BE(offset);
		const words = buf.readUInt16BE(offset + 2);
		offset += 4 + words * 4;
		if (offset > buf.length) return fail('header extension overruns the packet');
	}
	let end = buf.length;
	let padding = 0;
	if (hasPadding) {
		padding = buf[buf.length - 1] ?? 0;
		if (padding === 0 || offset + padding > end) return fail(`invalid padding length ${padding}`);
		end -= padding;
	}
	return {
		ok: true,
		value: {
			payloadType: b1 & 0x7f,
			marker: (b1 & 0x80) !== 0,
			sequenceNumber: buf.readUInt16BE(2),
			timestamp: buf.readUInt32BE(4),
			ssrc: buf.readUInt32BE(8),
			csrcCount,
			extensionProfile,
			payload: buf.subarray(offset, end),
			padding,
		},
	};
}

/** Builds an RTP packet (tests, benchmarks and tools that send to the ingest). */
export function buildRtp(p: {
	payloadType: number;
	marker?: boolean;
	sequenceNumber: number;
	timestamp: number;
	ssrc: number;
	payload: Buffer;
	csrcs?: number[];
	/** Raw extension body (a multiple of 4 bytes), sent with profile 0xBEDE. */
	extension?: Buffer;
	padding?: number;
}): Buffer {
	const csrcs = p.csrcs ?? [];
	const ext = p.extension;
	const pad = p.padding ?? 0;
	const size = 12 + csrcs.length * 4 + (ext ? 4 + ext.length : 0) + p.payload.length + pad;
	const buf = Buffer.alloc(size);
	buf[0] = 0x80 | (pad > 0 ? 0x20 : 0) | (ext ? 0x10 : 0) | (csrcs.length & 0x0f);
	buf[1] = (p.marker ? 0x80 : 0) | (p.payloadType & 0x7f);
	buf.writeUInt16BE(p.sequenceNumber & 0xffff, 2);
	buf.writeUInt32BE(p.timestamp >>> 0, 4);
	buf.writeUInt32BE(p.ssrc >>> 0, 8);
	let off = 12;
	for (const c of csrcs) {
		buf.writeUInt32BE(c >>> 0, off);
		off += 4;
	}
	if (ext) {
		buf.writeUInt16BE(0xbede, off);
		buf.writeUInt16BE(ext.length >> 2, off + 2);
		ext.copy(buf, off + 4);
		off += 4 + ext.length;
	}
	p.payload.copy(buf, off);
	if (pad > 0) buf[size - 1] = pad;
	return buf;
}

export const RTCP = { SR: 200, RR: 201, SDES: 202, BYE: 203, APP: 204, RTPFB: 205, PSFB: 206 } as const;

export interface SenderReport {
	type: 'sr';
	ssrc: number;
	/** NTP timestamp: seconds since 1900 and the 32-bit fraction. */
	ntpSeconds: number;
	ntpFraction: number;
	rtpTimestamp: number;
	packetCount: number;
	octetCount: number;
}

export interface Bye {
	type: 'bye';
	ssrcs: number[];
}

export interface OtherRtcp {
	type: 'other';
	packetType: number;
}

export type RtcpPacket = SenderReport | Bye | OtherRtcp;

/** Parses a compound RTCP packet; any malformed part fails the whole datagram. */
export function parseRtcp(buf: Buffer): ParseResult<RtcpPacket[]> {
	if (buf.length < 4) return fail('shorter than an RTCP header');
	const out: RtcpPacket[] = [];
	let off = 0;
	while (off < buf.length) {
		if (off + 4 > buf.length) return fail('RTCP header truncated');
		const b0 = buf[off] ?? 0;
		const version = b0 >> 6;
		if (version !== 2) return fail(`RTCP version ${version}`);
		const count = b0 & 0x1f;
		const packetType = buf[off + 1] ?? 0;
		const length = (buf.readUInt16BE(off + 2) + 1) * 4;
		if (off + length > buf.length) return fail(`RTCP packet type ${packetType} overruns the datagram`);
		const body = buf.subarray(off + 4, off + length);
		switch (packetType) {
			case RTCP.SR: {
				if (body.length < 24) return fail('sender report truncated');
				out.push({
					type: 'sr',
					ssrc: body.readUInt32BE(0),
					ntpSeconds: body.readUInt32BE(4),
					ntpFraction: body.readUInt32BE(8),
					rtpTimestamp: body.readUInt32BE(12),
					packetCount: body.readUInt32BE(16),
					octetCount: body.readUInt32BE(20),
				});
				break;
			}
			case RTCP.BYE: {
				if (body.length < count * 4) return fail('BYE truncated');
				const ssrcs: number[] = [];
				for (let i = 0; i < count; i++) ssrcs.push(body.readUInt32BE(i * 4));
				out.push({ type: 'bye', ssrcs });
				break;
			}
			default:
				if (packetType < 192 || packetType > 223) return fail(`RTCP packet type ${packetType}`);
				out.push({ type: 'other', packetType });
		}
		off += length;
	}
	return { ok: true, value: out };
}

/** Milliseconds of an NTP timestamp (any epoch; only differences matter here). */
export function ntpToMs(seconds: number, fraction: number): number {
	return seconds * 1000 + (fraction / 0x1_0000_0000) * 1000;
}

/** The middle 32 bits of an NTP timestamp: the LSR field of a report block. */
export function ntpMiddle32(seconds: number, fraction: number): number {
	return (((seconds & 0xffff) << 16) | (fraction >>> 16)) >>> 0;
}

export interface ReportBlock {
	ssrc: number;
	/** Fraction lost since the previous report, 0..255 (loss * 256). */
	fractionLost: number;
	/** Cumulative packets lost (24-bit signed on the wire; clamped). */
	cumulativeLost: number;
	/** Extended highest sequence number received (cycles << 16 | seq). */
	highestSeq: number;
	/** Interarrival jitter in timestamp units. */
	jitter: number;
	/** Middle 32 bits of the last SR's NTP time, 0 if none. */
	lastSr: number;
	/** Delay since that SR in 1/65536 s, 0 if none. */
	delaySinceLastSr: number;
}

function header(count: number, packetType: number, words: number): Buffer {
	const b = Buffer.alloc(4);
	b[0] = 0x80 | (count & 0x1f);
	b[1] = packetType;
	b.writeUInt16BE(words - 1, 2);
	return b;
}

function receiverReport(senderSsrc: number, block: ReportBlock | null): Buffer {
	const rr = Buffer.concat([header(block ? 1 : 0, RTCP.RR, block ? 8 : 2), Buffer.alloc(block ? 28 : 4)]);
	rr.writeUInt32BE(senderSsrc >>> 0, 4);
	if (block) {
		const lost = Math.max(-0x800000, Math.min(0x7fffff, Math.round(block.cumulativeLost)));
		rr.writeUInt32BE(block.ssrc >>> 0, 8);
		rr.writeUInt32BE((((Math.max(0, Math.min(255, block.fractionLost)) & 0xff) << 24) | (lost & 0xffffff)) >>> 0, 12);
		rr.writeUInt32BE(block.highestSeq >>> 0, 16);
		rr.writeUInt32BE(Math.max(0, Math.min(0xffffffff, Math.round(block.jitter))) >>> 0, 20);
		rr.writeUInt32BE(block.lastSr >>> 0, 24);
		rr.writeUInt32BE(block.delaySinceLastSr >>> 0, 28);
	}
	return rr;
}

function sdesCname(ssrc: number, cname: string): Buffer {
	const text = Buffer.from(cname, 'utf8').subarray(0, 255);
	// SSRC, then CNAME item (type, length, text), then at least one null byte, padded to 32 bits.
	const itemsLen = 4 + 2 + text.length + 1;
	const padded = Math.ceil(itemsLen / 4) * 4;
	const b = Buffer.alloc(4 + padded);
	header(1, RTCP.SDES, 1 + padded / 4).copy(b, 0);
	b.writeUInt32BE(ssrc >>> 0, 4);
	b[8] = 1;
	b[9] = text.length;
	text.copy(b, 10);
	return b;
}

/** A compound receiver report (RR + SDES CNAME), as RFC 3550 wants every RTCP datagram to be. */
export function buildReceiverReport(senderSsrc: number, cname: string, block: ReportBlock | null): Buffer {
	return Buffer.concat([receiverReport(senderSsrc, block), sdesCname(senderSsrc, cname)]);
}

/** A compound picture loss indication: RR + SDES + PLI (RFC 4585 6.3.1). */
export function buildPli(senderSsrc: number, mediaSsrc: number, cname: string, block: ReportBlock | null): Buffer {
	const pli = Buffer.concat([header(1, RTCP.PSFB, 3), Buffer.alloc(8)]);
	pli.writeUInt32BE(senderSsrc >>> 0, 4);
	pli.writeUInt32BE(mediaSsrc >>> 0, 8);
	return Buffer.concat([buildReceiverReport(senderSsrc, cname, block), pli]);
}

/** Builds a sender report (tests and tools that play the sender). */
export function buildSenderReport(sr: Omit<SenderReport, 'type'>): Buffer {
	const b = Buffer.concat([header(0, RTCP.SR, 7), Buffer.alloc(24)]);
	b.writeUInt32BE(sr.ssrc >>> 0, 4);
	b.writeUInt32BE(sr.ntpSeconds >>> 0, 8);
	b.writeUInt32BE(sr.ntpFraction >>> 0, 12);
	b.writeUInt32BE(sr.rtpTimestamp >>> 0, 16);
	b.writeUInt32BE(sr.packetCount >>> 0, 20);
	b.writeUInt32BE(sr.octetCount >>> 0, 24);
	return b;
}

/** Builds a BYE (tests and tools that play the sender). */
export function buildBye(ssrcs: number[]): Buffer {
	const b = Buffer.concat([header(ssrcs.length, RTCP.BYE, 1 + ssrcs.length), Buffer.alloc(ssrcs.length * 4)]);
	ssrcs.forEach((s, i) => b.writeUInt32BE(s >>> 0, 4 + i * 4));
	return b;
}

/** Parses a PSFB/PLI out of a compound packet: what a sender sees from us. */
export function findPli(buf: Buffer): { senderSsrc: number; mediaSsrc: number } | null {
	let off = 0;
	while (off + 4 <= buf.length) {
		const fmt = (buf[off] ?? 0) & 0x1f;
		const pt = buf[off + 1] ?? 0;
		const length = (buf.readUInt16BE(off + 2) + 1) * 4;
		if (off + length > buf.length) return null;
		if (pt === RTCP.PSFB && fmt === 1 && length >= 12) {
			return { senderSsrc: buf.readUInt32BE(off + 4), mediaSsrc: buf.readUInt32BE(off + 8) };
		}
		off += length;
	}
	return null;
}
