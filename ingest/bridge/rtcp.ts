import { BadRequest } from '../../server/common/errors.js';

export const RTCP = { SR: 200, RR: 201, SDES: 202, BYE: 203, APP: 204, RTPFB: 205, PSFB: 206 } as const;

/** Seconds between the NTP epoch (1900) and the Unix epoch (1970). */
const NTP_UNIX_OFFSET = 2_208_988_800;

/** A wall-clock time in Unix ms as a 64-bit NTP timestamp (seconds, fraction). */
export function ntpFromUnixMs(ms: number): { seconds: number; fraction: number } {
	const totalSeconds = ms / 1000 + NTP_UNIX_OFFSET;
	const seconds = Math.floor(totalSeconds);
	const fraction = Math.floor((totalSeconds - seconds) * 0x1_0000_0000);
	return { seconds: seconds >>> 0, fraction: Math.min(fraction, 0xffffffff) >>> 0 };
}

export function unixMsFromNtp(seconds: number, fraction: number): number {
	return (seconds - NTP_UNIX_OFFSET) * 1000 + (fraction / 0x1_0000_0000) * 1000;
}

export interface SenderReportInfo {
	ssrc: number;
	/** Wall-clock time the report describes, Unix ms. */
	ntpMs: number;
	/** The RTP timestamp that corresponds to ntpMs. */
	rtpTimestamp: number;
	packetCount: number;
	octetCount: number;
	/** CNAME for an SDES chunk appended to the report (one compound packet). */
	cname?: string;
}

/**
 * Builds an RTCP compound packet: a sender report with no report blocks
 * (we receive nothing on these streams) and, when a CNAME is given, an SDES
 * chunk carrying it, as RFC 3550 6.1 asks of every compound packet.
 */
export function buildSenderReport(sr: SenderReportInfo): Buffer {
	const cname = sr.cname === undefined ? null : Buffer.from(sr.cname, 'utf8').subarray(0, 255);
	// SDES chunk: SSRC, CNAME item (type, length, text), END, padded to 32 bits.
	const sdesChunk = cname ? 4 + 2 + cname.length + 1 : 0;
	const sdesLen = cname ? 4 + Math.ceil(sdesChunk / 4) * 4 : 0;
	const buf = Buffer.alloc(28 + sdesLen);
	buf[0] = 0x80;
	buf[1] = RTCP.SR;
	buf.writeUInt16BE(28 / 4 - 1, 2);
	buf.writeUInt32BE(sr.ssrc >>> 0, 4);
	const ntp = ntpFromUnixMs(sr.ntpMs);
	buf.writeUInt32BE(ntp.seconds, 8);
	buf.writeUInt32BE(ntp.fraction, 12);
	buf.writeUInt32BE(sr.rtpTimestamp >>> 0, 16);
	buf.writeUInt32BE(sr.packetCount >>> 0, 20);
	buf.writeUInt32BE(sr.octetCount >>> 0, 24);
	if (cname) {
		const o = 28;
		buf[o] = 0x81; // one chunk
		buf[o + 1] = RTCP.SDES;
		buf.writeUInt16BE(sdesLen / 4 - 1, o + 2);
		buf.writeUInt32BE(sr.ssrc >>> 0, o + 4);
		buf[o + 8] = 1; // CNAME
		buf[o + 9] = cname.length;
		cname.copy(buf, o + 10);
		// the END item and the padding are the zeros Buffer.alloc left
	}
	return buf;
}

export interface ParsedSenderReport {
	type: 'sr';
	ssrc: number;
	ntpMs: number;
	rtpTimestamp: number;
	packetCount: number;
	octetCount: number;
}

/** What mediasoup (or any receiver) sends back toward a sender. */
export type RtcpFeedback =
	| ParsedSenderReport
	| { type: 'rr'; senderSsrc: number; reports: { ssrc: number; fractionLost: number; cumulativeLost: number; jitter: number }[] }
	| { type: 'pli'; senderSsrc: number; mediaSsrc: number }
	| { type: 'fir'; senderSsrc: number; mediaSsrc: number; seq: number }
	| { type: 'nack'; senderSsrc: number; mediaSsrc: number; seqs: number[] }
	| { type: 'other'; packetType: number; fmt: number };

/**
 * Parses an RTCP compound packet into the parts a sender acts on. Throws
 * BadRequest on a malformed packet; the sub-packets before it are lost too,
 * which is what a receiver of a corrupt datagram should expect.
 */
export function parseRtcp(buf: Buffer): RtcpFeedback[] {
	const out: RtcpFeedback[] = [];
	let off = 0;
	if (buf.length < 4) throw new BadRequest('RTCP packet shorter than its header');
	while (off < buf.length) {
		if (off + 4 > buf.length) throw new BadRequest('RTCP header truncated');
		const b0 = buf[off] ?? 0;
		if (b0 >> 6 !== 2) throw new BadRequest(`RTCP version ${b0 >> 6} is not 2`);
		const count = b0 & 0x1f;
		const pt = buf[off + 1] ?? 0;
		const len = (buf.readUInt16BE(off + 2) + 1) * 4;
		if (off + len > buf.length) throw new BadRequest('RTCP packet overruns the datagram');
		const p = buf.subarray(off, off + len);
		off += len;
		switch (pt) {
			case RTCP.SR: {
				if (p.length < 28) throw new BadRequest('RTCP SR too short');
				out.push({
					type: 'sr',
					ssrc: p.readUInt32BE(4),
					ntpMs: unixMsFromNtp(p.readUInt32BE(8), p.readUInt32BE(12)),
					rtpTimestamp: p.readUInt32BE(16),
					packetCount: p.readUInt32BE(20),
					octetCount: p.readUInt32BE(24),
				});
				break;
			}
			case RTCP.RR: {
				if (p.length < 8 + count * 24) throw new BadRequest('RTCP RR too short for its report count');
				const reports = [];
				for (let i = 0; i < count; i++) {
					const r = 8 + i * 24;
					const lost = p.readUIntBE(r + 5, 3);
					reports.push({
						ssrc: p.readUInt32BE(r),
						fractionLost: (p[r + 4] ?? 0) / 256,
						cumulativeLost: lost & 0x800000 ? lost - 0x1000000 : lost,
						jitter: p.readUInt32BE(r + 12),
					});
				}
				out.push({ type: 'rr', senderSsrc: p.readUInt32BE(4), reports });
				break;
			}
			case RTCP.RTPFB: {
				if (p.length < 12) throw new BadRequest('RTCP transport feedback too short');
				if (count === 1) {
					const seqs: number[] = [];
					for (let f = 12; f + 4 <= p.length; f += 4) {
						const pid = p.readUInt16BE(f);
						const blp = p.readUInt16BE(f + 2);
						seqs.push(pid);
						for (let bit = 0; bit < 16; bit++) if (blp & (1 << bit)) seqs.push((pid + bit + 1) & 0xffff);
					}
					out.push({ type: 'nack', senderSsrc: p.readUInt32BE(4), mediaSsrc: p.readUInt32BE(8), seqs });
				} else {
					out.push({ type: 'other', packetType: pt, fmt: count });
				}
				break;
			}
			case RTCP.PSFB: {
				if (p.length < 12) throw new BadRequest('RTCP payload feedback too short');
				if (count === 1) {
					out.push({ type: 'pli', senderSsrc: p.readUInt32BE(4), mediaSsrc: p.readUInt32BE(8) });
				} else if (count === 4) {
					// FIR names its targets in the FCI entries, not in the media source field.
					for (let f = 12; f + 8 <= p.length; f += 8) {
						out.push({ type: 'fir', senderSsrc: p.readUInt32BE(4), mediaSsrc: p.readUInt32BE(f), seq: p[f + 4] ?? 0 });
					}
				} else {
					out.push({ type: 'other', packetType: pt, fmt: count });
				}
				break;
			}
			default:
				out.push({ type: 'other', packetType: pt, fmt: count });
		}
	}
	return out;
}

/** True when a datagram on an rtcp-mux port is RTCP rather than RTP (RFC 5761 4). */
export function isRtcp(buf: Buffer): boolean {
	const pt = buf[1] ?? 0;
	return buf.length >= 4 && pt >= 192 && pt <= 223;
}

/** Builds a PLI (for tests and for asking an upstream sender for a keyframe). */
export function buildPli(senderSsrc: number, mediaSsrc: number): Buffer {
	const buf = Buffer.alloc(12);
	buf[0] = 0x81;
	buf[1] = RTCP.PSFB;
	buf.writeUInt16BE(2, 2);
	buf.writeUInt32BE(senderSsrc >>> 0, 4);
	buf.writeUInt32BE(mediaSsrc >>> 0, 8);
	return buf;
}

/** Builds a generic NACK for the given sequence numbers (for tests). */
export function buildNack(senderSsrc: number, mediaSsrc: number, seqs: readonly number[]): Buffer {
	const items: { pid: number; blp: number }[] = [];
	for (const s of seqs) {
		const last = items[items.length - 1];
		const d = last ? (s - last.pid + 0x10000) & 0xffff : 0;
		if (last && d >= 1 && d <= 16) last.blp |= 1 << (d - 1);
		else items.push({ pid: s & 0xffff, blp: 0 });
	}
	const buf = Buffer.alloc(12 + items.length * 4);
	buf[0] = 0x81;
	buf[1] = RTCP.RTPFB;
	buf.writeUInt16BE(buf.length / 4 - 1, 2);
	buf.writeUInt32BE(senderSsrc >>> 0, 4);
	buf.writeUInt32BE(mediaSsrc >>> 0, 8);
	items.forEach((it, i) => {
		buf.writeUInt16BE(it.pid, 12 + i * 4);
		buf.writeUInt16BE(it.blp, 14 + i * 4);
	});
	return buf;
}
