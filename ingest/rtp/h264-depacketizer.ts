import { BadRequest, SubsecondError, Unsupported } from '../../server/common/errors.js';
import { NAL, h264ConfigFromParameterSets, sameH264Config } from '../../server/core/codecs/h264.js';
import type { H264Config } from '../../server/core/codecs/h264.js';

/**
 * RFC 6184 H.264 depacketizer for packetization-mode 1 (single NAL unit,
 * STAP-A, FU-A). Packets must come in sequence order (see ReorderBuffer), with
 * losses announced through loss(). An access unit is complete when the marker
 * bit arrives (emitted at once, never held for the next packet) or when the
 * timestamp changes (senders that forget the marker). Parameter sets are
 * taken out of the frames and turned into configs.
 */

/** One access unit as it came off the wire; `ts` is the extended RTP timestamp. */
export interface DepacketizedFrame {
	ts: number;
	keyframe: boolean;
	/** NAL units without parameter sets, AUDs or filler (those travel as config). */
	nalus: Buffer[];
	/** performance.now() when the last packet of the frame arrived. */
	receivedAt: number;
	bytes: number;
}

export interface DepacketizerStats {
	/** Access units emitted. */
	frames: number;
	keyframes: number;
	/** Access units dropped: damaged by loss, malformed, too large, or while waiting for a keyframe. */
	framesDropped: number;
	/** Of those, dropped because the reference chain was broken and no keyframe had come yet. */
	framesDroppedWaitingForKeyframe: number;
	/** Packets whose payload made no sense (bad NAL type, overrunning STAP-A, lone FU fragment). */
	malformedPackets: number;
	/** Packets of packetization-mode 2 (STAP-B, MTAP, FU-B): not supported. */
	unsupportedPackets: number;
	/** Fragmented NAL units abandoned because a fragment went missing. */
	fuAborted: number;
	/** Parameter sets that could not be parsed or are not supported. */
	badParameterSets: number;
	configChanges: number;
}

export interface DepacketizerHandlers {
	frame: (frame: DepacketizedFrame) => void;
	config: (config: H264Config) => void;
	/** The decoder reference chain is broken: a keyframe would repair it (send a PLI). */
	needKeyframe: () => void;
	/** Something a human should know once (bad SPS, unsupported packetization). */
	problem: (kind: string, message: string) => void;
}

interface AccessUnit {
	ts: number;
	nalus: Buffer[];
	bytes: number;
	damaged: boolean;
	/** Any NAL unit seen in this AU is used for reference (nal_ref_idc > 0). */
	reference: boolean;
	/** A slice of this AU was seen (so `reference` says what the picture is). */
	vcl: boolean;
	receivedAt: number;
}

interface Fragment {
	header: number;
	parts: Buffer[];
	bytes: number;
}

export interface DepacketizerOptions {
	maxFrameSize: number;
	/** Parameter sets known out of band (sprop-parameter-sets). */
	sps?: Buffer;
	pps?: Buffer;
}

export class H264Depacketizer {
	readonly stats: DepacketizerStats = {
		frames: 0,
		keyframes: 0,
		framesDropped: 0,
		framesDroppedWaitingForKeyframe: 0,
		malformedPackets: 0,
		unsupportedPackets: 0,
		fuAborted: 0,
		badParameterSets: 0,
		configChanges: 0,
	};
	readonly #h: DepacketizerHandlers;
	readonly #maxFrameSize: number;
	#au: AccessUnit | null = null;
	#fu: Fragment | null = null;
	/** The parameter sets of the current config. */
	#sps: Buffer | null = null;
	#pps: Buffer | null = null;
	/** Parameter sets seen since the last keyframe, applied at the next one. */
	#candidateSps: Buffer | null = null;
	#candidatePps: Buffer | null = null;
	#config: H264Config | null = null;
	/** Frames are dropped until an IDR: at start, and after a loss broke the reference chain. */
	#waitKeyframe = true;
	/** A loss was announced and the next packet decides which access unit it hit. */
	#lossPending = false;
	/** The parameter sets that last failed, so one bad SPS is reported once. */
	#badParams: string | null = null;

	constructor(handlers: DepacketizerHandlers, opts: DepacketizerOptions) {
		this.#h = handlers;
		this.#maxFrameSize = opts.maxFrameSize;
		if (opts.sps && opts.pps) {
			// Out-of-band parameter sets are validated by whoever took them; no event for these.
			this.#sps = opts.sps;
			this.#pps = opts.pps;
			this.#config = h264ConfigFromParameterSets([opts.sps], [opts.pps]);
		}
	}

	get config(): H264Config | null {
		return this.#config;
	}

	get waitingForKeyframe(): boolean {
		return this.#waitKeyframe;
	}

	/** Packets before the next one were lost. */
	loss(): void {
		this.#lossPending = true;
	}

	/** Drops any partial frame and waits for a keyframe (new sender, timestamp discontinuity). */
	reset(): void {
		this.#au = null;
		this.#fu = null;
		this.#lossPending = false;
		this.#waitKeyframe = true;
	}

	/** One RTP payload, in sequence order. */
	push(payload: Buffer, ts: number, marker: boolean, arrivedAt: number): void {
		let au = this.#au;
		if (this.#lossPending) {
			this.#lossPending = false;
			if (au && au.ts === ts) {
				// The gap sat inside this frame: it is damaged, and maybe only it.
				au.damaged = true;
			} else {
				// Whole packets between frames are gone (and the tail of the open
				// frame, whose marker never came): some reference picture is missing.
				if (au) au.damaged = true;
				this.#breakChain();
			}
			if (this.#fu) this.#abortFragment(au);
		}
		if (au && au.ts !== ts) {
			// The marker of the previous frame never came (a lax sender, or lost above).
			if (this.#fu) this.#abortFragment(au);
			this.#finish(au);
			au = null;
		}
		if (!au) {
			au = { ts, nalus: [], bytes: 0, damaged: false, reference: false, vcl: false, receivedAt: arrivedAt };
			this.#au = au;
		}
		au.receivedAt = arrivedAt;
		this.#payload(au, payload);
		if (marker) {
			if (this.#fu) this.#abortFragment(au);
			this.#finish(au);
		}
	}

	/** Emits a frame still waiting for its marker (end of stream). */
	flush(): void {
		const au = this.#au;
		if (!au) return;
		if (this.#fu) this.#abortFragment(au);
		this.#finish(au);
	}

	#payload(au: AccessUnit, p: Buffer): void {
		if (p.length === 0) {
			this.#malformed(au);
			return;
		}
		const b0 = p[0] ?? 0;
		const type = b0 & 0x1f;
		if (type >= 1 && type <= 23) {
			if (this.#fu) this.#abortFragment(au);
			this.#addNal(au, p);
		} else if (type === NAL.STAP_A) {
			if (this.#fu) this.#abortFragment(au);
			this.#stapA(au, p);
		} else if (type === NAL.FU_A) {
			this.#fuA(au, p);
		} else if (type >= 25 && type <= 27 || type === 29) {
			this.stats.unsupportedPackets++;
			au.damaged = true;
			this.#h.problem(
				'packetization-mode',
				`H.264 RTP payload type ${type} (STAP-B/MTAP/FU-B) needs packetization-mode 2, which is not supported; send packetization-mode 1`,
			);
		} else {
			this.#malformed(au);
		}
	}

	#stapA(au: AccessUnit, p: Buffer): void {
		let off = 1;
		const nalus: Buffer[] = [];
		while (off < p.length) {
			if (off + 2 > p.length) return this.#malformed(au);
			const size = p.readUInt16BE(off);
			off += 2;
			if (size === 0 || off + size > p.length) return this.#malformed(au);
			nalus.push(p.subarray(off, off + size));
			off += size;
		}
		if (nalus.length === 0) return this.#malformed(au);
		for (const n of nalus) this.#addNal(au, n);
	}

	#fuA(au: AccessUnit, p: Buffer): void {
		if (p.length < 3) return this.#malformed(au);
		const indicator = p[0] ?? 0;
		const fuHeader = p[1] ?? 0;
		const start = (fuHeader & 0x80) !== 0;
		const end = (fuHeader & 0x40) !== 0;
		const body = p.subarray(2);
		const fuType = fuHeader & 0x1f;
		if (fuType >= 1 && fuType <= 5) au.vcl = true;
		if (start) {
			if (this.#fu) this.#abortFragment(au);
			this.#fu = { header: (indicator & 0xe0) | (fuHeader & 0x1f), parts: [body], bytes: body.length + 1 };
		} else {
			const fu = this.#fu;
			if (!fu) {
				// The start fragment is gone: the rest of this NAL unit is useless.
				// After an announced loss that is expected, not a malformed packet.
				if (!au.damaged) this.stats.malformedPackets++;
				au.damaged = true;
				if (indicator & 0x60) au.reference = true;
				return;
			}
			fu.parts.push(body);
			fu.bytes += body.length;
		}
		const fu = this.#fu;
		if (!fu) return;
		if (au.bytes + fu.bytes > this.#maxFrameSize) {
			this.#fu = null;
			this.stats.fuAborted++;
			au.damaged = true;
			au.reference = true;
			return;
		}
		if (end) {
			this.#fu = null;
			this.#addNal(au, Buffer.concat([Buffer.from([fu.header]), ...fu.parts], fu.bytes));
		}
	}

	#abortFragment(au: AccessUnit | null): void {
		const fu = this.#fu;
		this.#fu = null;
		if (!fu) return;
		this.stats.fuAborted++;
		if (au) {
			au.damaged = true;
			if (fu.header & 0x60) au.reference = true;
		} else {
			this.#breakChain();
		}
	}

	#addNal(au: AccessUnit, nal: Buffer): void {
		const b0 = nal[0] ?? 0;
		if (b0 & 0x80) {
			// forbidden_zero_bit: the sender says this NAL unit is corrupt.
			this.#malformed(au);
			return;
		}
		if (b0 & 0x60) au.reference = true;
		const t = b0 & 0x1f;
		if (t >= 1 && t <= 5) au.vcl = true;
		au.bytes += nal.length;
		if (au.bytes > this.#maxFrameSize) {
			au.damaged = true;
			return;
		}
		au.nalus.push(nal);
	}

	#malformed(au: AccessUnit): void {
		this.stats.malformedPackets++;
		au.damaged = true;
		// A damaged NAL unit of unknown importance: assume it mattered.
		au.reference = true;
	}

	#breakChain(): void {
		this.#waitKeyframe = true;
		this.#h.needKeyframe();
	}

	#finish(au: AccessUnit): void {
		this.#au = null;
		const kept: Buffer[] = [];
		let keyframe = false;
		let vcl = false;
		let bytes = 0;
		let sps: Buffer | null = null;
		let pps: Buffer | null = null;
		for (const n of au.nalus) {
			const t = (n[0] ?? 0) & 0x1f;
			if (t === NAL.SPS) {
				sps = n;
				continue;
			}
			if (t === NAL.PPS) {
				pps = n;
				continue;
			}
			// Access unit delimiters, filler data and end-of-sequence/stream carry nothing downstream needs.
			if (t === NAL.AUD || t === 10 || t === 11 || t === 12) continue;
			if (t === NAL.IDR) keyframe = true;
			if (t >= 1 && t <= 5) vcl = true;
			kept.push(n);
			bytes += n.length;
		}
		// Only whole NAL units are in the list, so parameter sets count even from a
		// damaged frame; they take effect with the next intact keyframe (where H.264
		// activates them), so a stray or spoofed one cannot reconfigure the stream.
		if (sps) this.#candidateSps = Buffer.from(sps);
		if (pps) this.#candidatePps = Buffer.from(pps);
		if (au.damaged) {
			this.#drop();
			// A picture nobody refers to can go alone; anything else breaks the chain.
			if (au.reference || !au.vcl) this.#breakChain();
			return;
		}
		if (!vcl) return; // parameter sets or SEI on their own: not a picture
		if (keyframe && !this.#applyParameterSets(sps !== null || pps !== null)) {
			this.#drop();
			this.#waitKeyframe = true;
			return;
		}
		if (this.#waitKeyframe && !keyframe) {
			this.#drop();
			this.stats.framesDroppedWaitingForKeyframe++;
			// The session rate-limits these into picture loss indications.
			this.#h.needKeyframe();
			return;
		}
		if (!this.#config) {
			// A keyframe without parameter sets (in band or sprop): undecodable.
			this.#drop();
			this.#h.problem(
				'no-parameter-sets',
				'H.264 keyframe without SPS/PPS: send them in band (e.g. rtph264pay config-interval=-1) or as sprop-parameter-sets',
			);
			return;
		}
		this.#waitKeyframe = false;
		this.stats.frames++;
		if (keyframe) this.stats.keyframes++;
		this.#h.frame({ ts: au.ts, keyframe, nalus: kept, receivedAt: au.receivedAt, bytes });
	}

	#drop(): void {
		this.stats.framesDropped++;
	}

	/**
	 * At a keyframe: makes the latest parameter sets current (announcing a
	 * changed config). False when the keyframe brought parameter sets of its own
	 * that cannot be used; unusable leftovers from elsewhere are just forgotten.
	 */
	#applyParameterSets(carried: boolean): boolean {
		const sps = this.#candidateSps ?? this.#sps;
		const pps = this.#candidatePps ?? this.#pps;
		this.#candidateSps = null;
		this.#candidatePps = null;
		if (!sps || !pps) return true;
		if (this.#config && this.#sps?.equals(sps) && this.#pps?.equals(pps)) return true;
		let config: H264Config;
		try {
			config = h264ConfigFromParameterSets([sps], [pps]);
		} catch (err) {
			this.stats.badParameterSets++;
			const key = `${sps.toString('hex')}/${pps.toString('hex')}`;
			if (this.#badParams !== key) {
				this.#badParams = key;
				const message = err instanceof SubsecondError ? err.message : String(err);
				this.#h.problem('parameter-sets', `unusable H.264 parameter sets: ${message}`);
			}
			return !carried;
		}
		this.#sps = sps;
		this.#pps = pps;
		this.#badParams = null;
		if (this.#config && sameH264Config(this.#config, config)) return true;
		this.#config = config;
		this.stats.configChanges++;
		this.#h.config(config);
		return true;
	}
}

/** Parses `sprop-parameter-sets` (comma-separated base64 NAL units) into an SPS and a PPS. */
export function parseSpropParameterSets(value: string): { sps: Buffer; pps: Buffer } {
	let sps: Buffer | null = null;
	let pps: Buffer | null = null;
	for (const part of value.split(',')) {
		const b64 = part.trim();
		if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new BadRequest(`sprop-parameter-sets: ${JSON.stringify(b64)} is not base64`);
		const nal = Buffer.from(b64, 'base64');
		const t = (nal[0] ?? 0) & 0x1f;
		if (t === NAL.SPS && !sps) sps = nal;
		else if (t === NAL.PPS && !pps) pps = nal;
	}
	if (!sps || !pps) throw new BadRequest('sprop-parameter-sets must hold an SPS and a PPS');
	// Validate now so a bad value is refused at POST time, not a silent stream.
	try {
		h264ConfigFromParameterSets([sps], [pps]);
	} catch (err) {
		if (err instanceof Unsupported) throw err;
		throw new BadRequest(`sprop-parameter-sets: the SPS cannot be parsed (${err instanceof Error ? err.message : String(err)})`, { cause: err });
	}
	return { sps, pps };
}
