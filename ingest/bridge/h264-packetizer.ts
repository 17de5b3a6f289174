import { NAL } from '../../server/core/codecs/h264.js';
import { RTP_HEADER_SIZE } from './rtp.js';
import type { RtpSender } from './rtp.js';

/** Parameter sets sent in front of every keyframe. */
export interface ParameterSets {
	sps: readonly Buffer[];
	pps: readonly Buffer[];
}

/** NAL units that never go on the wire: AUDs, end of sequence/stream, filler. */
function dropped(type: number): boolean {
	return type === 0 || type === NAL.AUD || type === 10 || type === 11 || type === 12;
}

function containsEqual(list: readonly Buffer[], nal: Buffer): boolean {
	for (const b of list) if (b.length === nal.length && b.equals(nal)) return true;
	return false;
}

/**
 * RFC 6184 packetizer, packetization-mode 1: single NAL unit packets, STAP-A
 * for runs of small NAL units (the SPS and PPS sent before each keyframe),
 * FU-A for NAL units larger than a packet. One access unit per call; the
 * marker bit is set on its last packet. Payloads are written straight into
 * the sender's packet buffers.
 */
export class H264Packetizer {
	readonly #sender: RtpSender;
	readonly #maxPayload: number;
	// Reused across calls: the NAL units of the access unit being sent.
	readonly #list: Buffer[] = [];

	/** `maxPayload`: largest RTP payload (the sender's packets must hold it). */
	constructor(sender: RtpSender, maxPayload: number) {
		if (maxPayload < 64) throw new RangeError('maxPayload too small for H.264');
		if (maxPayload > sender.maxPacketSize - RTP_HEADER_SIZE) throw new RangeError('maxPayload exceeds the sender packet size');
		this.#sender = sender;
		this.#maxPayload = maxPayload;
	}

	get maxPayload(): number {
		return this.#maxPayload;
	}

	/**
	 * Sends one access unit at `timestamp` (90 kHz). When it is a keyframe
	 * (flagged, or holding an IDR slice), `params` go first; in-band copies of
	 * the same parameter sets are skipped so receivers do not get them twice.
	 * Returns the number of packets sent.
	 */
	send(nalus: readonly Buffer[], timestamp: number, keyframe: boolean, params: ParameterSets | null): number {
		const list = this.#list;
		list.length = 0;
		let idr = keyframe;
		if (!idr) for (const n of nalus) if (((n[0] ?? 0) & 0x1f) === NAL.IDR) idr = true;
		if (idr && params) {
			for (const s of params.sps) list.push(s);
			for (const p of params.pps) list.push(p);
		}
		for (const n of nalus) {
			if (n.length === 0) continue;
			const type = (n[0] ?? 0) & 0x1f;
			if (dropped(type)) continue;
			if (params && type === NAL.SPS && containsEqual(params.sps, n)) continue;
			if (params && type === NAL.PPS && containsEqual(params.pps, n)) continue;
			list.push(n);
		}
		let packets = 0;
		let i = 0;
		while (i < list.length) {
			const nal = list[i] as Buffer;
			// How many NAL units from i fit into one STAP-A (1 header byte, 2-byte sizes)?
			let size = 1 + 2 + nal.length;
			let j = i + 1;
			while (j < list.length) {
				const next = list[j] as Buffer;
				if (size + 2 + next.length > this.#maxPayload) break;
				size += 2 + next.length;
				j++;
			}
			const last = j >= list.length;
			if (j - i >= 2) {
				packets += this.#stapA(list, i, j, timestamp, last);
				i = j;
			} else if (nal.length <= this.#maxPayload) {
				this.#sender.sendPayload(nal, i === list.length - 1, timestamp);
				packets++;
				i++;
			} else {
				packets += this.#fuA(nal, timestamp, i === list.length - 1);
				i++;
			}
		}
		list.length = 0;
		return packets;
	}

	#stapA(list: readonly Buffer[], from: number, to: number, timestamp: number, marker: boolean): number {
		const buf = this.#sender.next();
		let off = RTP_HEADER_SIZE + 1;
		let f = 0;
		let nri = 0;
		for (let k = from; k < to; k++) {
			const n = list[k] as Buffer;
			const h = n[0] ?? 0;
			f |= h & 0x80;
			nri = Math.max(nri, h & 0x60);
			buf.writeUInt16BE(n.length, off);
			n.copy(buf, off + 2);
			off += 2 + n.length;
		}
		buf[RTP_HEADER_SIZE] = f | nri | NAL.STAP_A;
		this.#sender.commit(off - RTP_HEADER_SIZE, marker, timestamp);
		return 1;
	}

	#fuA(nal: Buffer, timestamp: number, lastNal: boolean): number {
		const header = nal[0] ?? 0;
		const indicator = (header & 0xe0) | NAL.FU_A;
		const type = header & 0x1f;
		const total = nal.length - 1;
		const maxFragment = this.#maxPayload - 2;
		// Even fragments: no runt packet at the end of every large NAL unit.
		const count = Math.ceil(total / maxFragment);
		const base = Math.floor(total / count);
		let extra = total - base * count;
		let off = 1;
		for (let k = 0; k < count; k++) {
			const len = base + (extra > 0 ? 1 : 0);
			if (extra > 0) extra--;
			const end = k === count - 1;
			const buf = this.#sender.next();
			buf[RTP_HEADER_SIZE] = indicator;
			buf[RTP_HEADER_SIZE + 1] = (k === 0 ? 0x80 : 0) | (end ? 0x40 : 0) | type;
			nal.copy(buf, RTP_HEADER_SIZE + 2, off, off + len);
			off += len;
			this.#sender.commit(len + 2, end && lastNal, timestamp);
		}
		return count;
	}
}

/**
 * RFC 6184 depacketizer for what H264Packetizer emits: payloads of one
 * access unit in, NAL units out. For tests and for checking our own output;
 * the RTP ingest has the hardened one for untrusted senders.
 */
export function depacketizeH264(payloads: readonly Buffer[]): Buffer[] {
	const out: Buffer[] = [];
	let fu: Buffer[] | null = null;
	for (const p of payloads) {
		if (p.length < 1) throw new Error('empty payload');
		const type = (p[0] ?? 0) & 0x1f;
		if (type === NAL.STAP_A) {
			let off = 1;
			while (off < p.length) {
				if (off + 2 > p.length) throw new Error('STAP-A size truncated');
				const len = p.readUInt16BE(off);
				if (off + 2 + len > p.length) throw new Error('STAP-A unit overruns');
				out.push(Buffer.from(p.subarray(off + 2, off + 2 + len)));
				off += 2 + len;
			}
		} else if (type === NAL.FU_A) {
			if (p.length < 3) throw new Error('FU-A too short');
			const h = p[1] ?? 0;
			if (h & 0x80) {
				if (fu) throw new Error('FU-A start inside a fragmented unit');
				fu = [Buffer.from([((p[0] ?? 0) & 0xe0) | (h & 0x1f)])];
			}
			if (!fu) throw new Error('FU-A fragment without a start');
			fu.push(p.subarray(2));
			if (h & 0x40) {
				out.push(Buffer.concat(fu));
				fu = null;
			}
		} else if (type >= 1 && type <= 23) {
			out.push(Buffer.from(p));
		} else {
			throw new Error(`unexpected NAL/packet type ${type}`);
		}
	}
	if (fu) throw new Error('access unit ends inside a fragmented unit');
	return out;
}
