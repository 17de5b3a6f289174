import { BadRequest, Unsupported } from '../../common/errors.js';
import { BitReader } from './bits.js';

export const NAL = {
	SLICE: 1,
	IDR: 5,
	SEI: 6,
	SPS: 7,
	PPS: 8,
	AUD: 9,
	STAP_A: 24,
	FU_A: 28,
} as const;

export function nalType(nalu: Buffer): number {
	return (nalu[0] ?? 0) & 0x1f;
}

/** What the SPS says, as far as anything here needs it. */
export interface SpsInfo {
	profileIdc: number;
	/** The constraint_set flags byte (second byte of profile-level-id). */
	constraintFlags: number;
	levelIdc: number;
	/** RFC 6184 profile-level-id: 6 hex digits, e.g. `42e01f`. */
	profileLevelId: string;
	profile: string;
	width: number;
	height: number;
	/** From VUI timing info, when the encoder wrote it. */
	fps: number | null;
	/** max_num_reorder_frames from VUI: 0 means no B-frames; null if unknown. */
	maxReorderFrames: number | null;
	chromaFormatIdc: number;
	bitDepth: number;
}

/** Removes emulation prevention bytes (00 00 03 -> 00 00) from a NAL unit. */
export function unescapeRbsp(nalu: Buffer): Buffer {
	const out = Buffer.allocUnsafe(nalu.length);
	let o = 0;
	let zeros = 0;
	for (let i = 0; i < nalu.length; i++) {
		const b = nalu[i] ?? 0;
		if (zeros >= 2 && b === 3) {
			zeros = 0;
			continue;
		}
		zeros = b === 0 ? zeros + 1 : 0;
		out[o++] = b;
	}
	return out.subarray(0, o);
}

export function profileName(profileIdc: number, constraintFlags: number): string {
	switch (profileIdc) {
		case 66:
			return constraintFlags & 0x40 ? 'Constrained Baseline' : 'Baseline';
		case 77:
			return 'Main';
		case 88:
			return 'Extended';
		case 100:
			return constraintFlags & 0x0c ? 'Constrained High' : 'High';
		case 110:
			return 'High 10';
		case 122:
			return 'High 4:2:2';
		case 244:
			return 'High 4:4:4 Predictive';
		default:
			return `profile ${profileIdc}`;
	}
}

const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

function skipScalingList(r: BitReader, size: number): void {
	let last = 8;
	let next = 8;
	for (let j = 0; j < size; j++) {
		if (next !== 0) {
			next = (last + r.se() + 256) % 256;
		}
		last = next === 0 ? last : next;
	}
}

/** Parses a sequence parameter set NAL unit (with its one-byte NAL header). */
export function parseSps(nalu: Buffer): SpsInfo {
	if (nalu.length < 4 || nalType(nalu) !== NAL.SPS) throw new BadRequest('not an H.264 SPS');
	const r = new BitReader(unescapeRbsp(nalu.subarray(1)));
	const profileIdc = r.bits(8);
	const constraintFlags = r.bits(8);
	const levelIdc = r.bits(8);
	r.ue(); // seq_parameter_set_id
	let chromaFormatIdc = 1;
	let bitDepth = 8;
	let separateColourPlane = 0;
	if (HIGH_PROFILES.has(profileIdc)) {
		chromaFormatIdc = r.ue();
		if (chromaFormatIdc > 3) throw new BadRequest('SPS chroma_format_idc out of range');
		if (chromaFormatIdc === 3) separateColourPlane = r.bit();
		bitDepth = r.ue() + 8; // bit_depth_luma_minus8
		r.ue(); // bit_depth_chroma_minus8
		r.bit(); // qpprime_y_zero_transform_bypass_flag
		if (r.bit()) {
			const lists = chromaFormatIdc !== 3 ? 8 : 12;
			for (let i = 0; i < lists; i++) if (r.bit()) skipScalingList(r, i < 6 ? 16 : 64);
		}
	}
	r.ue(); // log2_max_frame_num_minus4
	const pocType = r.ue();
	if (pocType === 0) {
		r.ue(); // log2_max_pic_order_cnt_lsb_minus4
	} else if (pocType === 1) {
		r.bit(); // delta_pic_order_always_zero_flag
		r.se();
		r.se();
		const n = r.ue();
		if (n > 255) throw new BadRequest('SPS num_ref_frames_in_pic_order_cnt_cycle out of range');
		for (let i = 0; i < n; i++) r.se();
	}
	r.ue(); // max_num_ref_frames
	r.bit(); // gaps_in_frame_num_value_allowed_flag
	const widthMbs = r.ue() + 1;
	const heightMapUnits = r.ue() + 1;
	const frameMbsOnly = r.bit();
	if (!frameMbsOnly) r.bit(); // mb_adaptive_frame_field_flag
	r.bit(); // direct_8x8_inference_flag
	let cropLeft = 0;
	let cropRight = 0;
	let cropTop = 0;
	let cropBottom = 0;
	if (r.bit()) {
		cropLeft = r.ue();
		cropRight = r.ue();
		cropTop = r.ue();
		cropBottom = r.ue();
	}
	const chromaArray = separateColourPlane ? 0 : chromaFormatIdc;
	const cropUnitX = chromaArray === 0 ? 1 : chromaArray === 3 ? 1 : 2;
	const cropUnitY = (chromaArray === 1 ? 2 : 1) * (2 - frameMbsOnly);
	const width = widthMbs * 16 - cropUnitX * (cropLeft + cropRight);
	const height = (2 - frameMbsOnly) * heightMapUnits * 16 - cropUnitY * (cropTop + cropBottom);
	if (width <= 0 || height <= 0 || width > 16384 || height > 16384) throw new BadRequest('SPS picture size out of range');

	let fps: number | null = null;
	let maxReorderFrames: number | null = null;
	// VUI is optional and some encoders write it badly: a short read is not an error.
	try {
		if (r.bit()) {
			({ fps, maxReorderFrames } = parseVui(r));
		}
	} catch {
		// keep what we have
	}
	if (profileIdc === 66 && maxReorderFrames === null) maxReorderFrames = 0; // Baseline has no B-frames

	return {
		profileIdc,
		constraintFlags,
		levelIdc,
		profileLevelId: [profileIdc, constraintFlags, levelIdc].map((b) => b.toString(16).padStart(2, '0')).join(''),
		profile: profileName(profileIdc, constraintFlags),
		width,
		height,
		fps,
		maxReorderFrames,
		chromaFormatIdc,
		bitDepth,
	};
}

function skipHrd(r: BitReader): void {
	const cpbCnt = r.ue() + 1;
	r.skip(8); // bit_rate_scale, cpb_size_scale
	for (let i = 0; i < cpbCnt; i++) {
		r.ue();
		r.ue();
		r.bit();
	}
	r.skip(20); // four 5-bit lengths
}

function parseVui(r: BitReader): { fps: number | null; maxReorderFrames: number | null } {
	if (r.bit()) {
		// aspect_ratio_info_present_flag
		if (r.bits(8) === 255) r.skip(32); // Extended_SAR
	}
	if (r.bit()) r.bit(); // overscan
	if (r.bit()) {
		// video_signal_type_present_flag
		r.skip(4);
		if (r.bit()) r.skip(24);
	}
	if (r.bit()) {
		// chroma_loc_info_present_flag
		r.ue();
		r.ue();
	}
	let fps: number | null = null;
	if (r.bit()) {
		const numUnitsInTick = r.bits(32);
		const timeScale = r.bits(32);
		r.bit(); // fixed_frame_rate_flag
		if (numUnitsInTick > 0 && timeScale > 0) {
			const f = timeScale / (2 * numUnitsInTick);
			if (f > 0 && f <= 1000) fps = Math.round(f * 1000) / 1000;
		}
	}
	const nalHrd = r.bit();
	if (nalHrd) skipHrd(r);
	const vclHrd = r.bit();
	if (vclHrd) skipHrd(r);
	if (nalHrd || vclHrd) r.bit(); // low_delay_hrd_flag
	r.bit(); // pic_struct_present_flag
	let maxReorderFrames: number | null = null;
	if (r.bit()) {
		// bitstream_restriction_flag
		r.bit();
		r.ue();
		r.ue();
		r.ue();
		r.ue();
		maxReorderFrames = r.ue();
		r.ue(); // max_dec_frame_buffering
	}
	return { fps, maxReorderFrames };
}

/** A parsed AVCDecoderConfigurationRecord (ISO/IEC 14496-15 avcC). */
export interface AvcConfigRecord {
	profileIdc: number;
	constraintFlags: number;
	levelIdc: number;
	/** Bytes of each NAL unit length prefix in the samples: 1, 2 or 4. */
	nalLengthSize: number;
	sps: Buffer[];
	pps: Buffer[];
}

export function parseAvcC(buf: Buffer): AvcConfigRecord {
	if (buf.length < 7) throw new BadRequest('AVCDecoderConfigurationRecord too short');
	if (buf[0] !== 1) throw new BadRequest(`AVCDecoderConfigurationRecord version ${buf[0]} is not 1`);
	const nalLengthSize = ((buf[4] ?? 0) & 0x03) + 1;
	if (nalLengthSize === 3) throw new BadRequest('NAL length size 3 is invalid');
	let off = 6; // after the SPS count byte
	const readList = (count: number): Buffer[] => {
		const list: Buffer[] = [];
		for (let i = 0; i < count; i++) {
			if (off + 2 > buf.length) throw new BadRequest('AVCDecoderConfigurationRecord truncated');
			const len = buf.readUInt16BE(off);
			off += 2;
			if (len === 0 || off + len > buf.length) throw new BadRequest('AVCDecoderConfigurationRecord truncated');
			list.push(Buffer.from(buf.subarray(off, off + len)));
			off += len;
		}
		return list;
	};
	const sps = readList((buf[5] ?? 0) & 0x1f);
	if (off >= buf.length) throw new BadRequest('AVCDecoderConfigurationRecord has no PPS count');
	const ppsCount = buf[off++] ?? 0;
	const pps = readList(ppsCount);
	if (sps.length === 0 || pps.length === 0) throw new BadRequest('AVCDecoderConfigurationRecord without SPS or PPS');
	return {
		profileIdc: buf[1] ?? 0,
		constraintFlags: buf[2] ?? 0,
		levelIdc: buf[3] ?? 0,
		nalLengthSize,
		sps,
		pps,
	};
}

/** Builds an avcC record (4-byte NAL lengths) from parameter sets. */
export function buildAvcC(sps: Buffer[], pps: Buffer[]): Buffer {
	const first = sps[0];
	if (!first || first.length < 4 || pps.length === 0) throw new BadRequest('avcC needs an SPS and a PPS');
	const parts: Buffer[] = [
		Buffer.from([1, first[1] ?? 0, first[2] ?? 0, first[3] ?? 0, 0xff, 0xe0 | sps.length]),
	];
	for (const s of sps) parts.push(u16(s.length), s);
	parts.push(Buffer.from([pps.length]));
	for (const p of pps) parts.push(u16(p.length), p);
	const profileIdc = first[1] ?? 0;
	if (HIGH_PROFILES.has(profileIdc)) {
		// High profiles carry chroma format and bit depths after the PPS list.
		const info = parseSps(first);
		parts.push(Buffer.from([0xfc | info.chromaFormatIdc, 0xf8 | (info.bitDepth - 8), 0xf8 | (info.bitDepth - 8), 0]));
	}
	return Buffer.concat(parts);
}

function u16(n: number): Buffer {
	const b = Buffer.allocUnsafe(2);
	b.writeUInt16BE(n);
	return b;
}

/** Splits length-prefixed NAL units (AVCC sample format). */
export function splitLengthPrefixed(buf: Buffer, lengthSize: number): Buffer[] {
	const out: Buffer[] = [];
	let off = 0;
	while (off < buf.length) {
		if (off + lengthSize > buf.length) throw new BadRequest('NAL unit length prefix truncated');
		let len = 0;
		for (let i = 0; i < lengthSize; i++) len = len * 256 + (buf[off + i] ?? 0);
		off += lengthSize;
		if (len === 0) continue;
		if (off + len > buf.length) throw new BadRequest(`NAL unit of ${len} bytes overruns its frame`);
		out.push(buf.subarray(off, off + len));
		off += len;
	}
	return out;
}

/** Splits an Annex B byte stream (start codes 00 00 01 / 00 00 00 01) into NAL units. */
export function splitAnnexB(buf: Buffer): Buffer[] {
	const out: Buffer[] = [];
	let start = -1;
	let i = 0;
	while (i + 2 < buf.length) {
		if (buf[i] === 0 && buf[i + 1] === 0 && buf[i + 2] === 1) {
			if (start >= 0) {
				let end = i;
				while (end > start && buf[end - 1] === 0) end--;
				if (end > start) out.push(buf.subarray(start, end));
			}
			i += 3;
			start = i;
		} else {
			i++;
		}
	}
	if (start >= 0 && start < buf.length) out.push(buf.subarray(start));
	else if (start < 0 && buf.length > 0) out.push(buf);
	return out;
}

/** Joins NAL units into one AVCC sample with 4-byte length prefixes (for MP4). */
export function toLengthPrefixed(nalus: readonly Buffer[]): Buffer {
	let size = 0;
	for (const n of nalus) size += 4 + n.length;
	const out = Buffer.allocUnsafe(size);
	let off = 0;
	for (const n of nalus) {
		out.writeUInt32BE(n.length, off);
		n.copy(out, off + 4);
		off += 4 + n.length;
	}
	return out;
}

/** Joins NAL units with 4-byte start codes (for ffmpeg's raw h264 demuxer). */
export function toAnnexB(nalus: readonly Buffer[]): Buffer {
	const parts: Buffer[] = [];
	const sc = Buffer.from([0, 0, 0, 1]);
	for (const n of nalus) parts.push(sc, n);
	return Buffer.concat(parts);
}

/** The H.264 decoder configuration every component shares. */
export interface H264Config extends SpsInfo {
	codec: 'h264';
	sps: Buffer[];
	pps: Buffer[];
	/** avcC with 4-byte NAL lengths, built from sps and pps. */
	avcC: Buffer;
}

export function h264ConfigFromParameterSets(sps: Buffer[], pps: Buffer[]): H264Config {
	const first = sps[0];
	if (!first) throw new BadRequest('H.264 configuration without an SPS');
	if (pps.length === 0) throw new BadRequest('H.264 configuration without a PPS');
	const info = parseSps(first);
	if (info.chromaFormatIdc !== 1 || info.bitDepth !== 8) {
		throw new Unsupported(
			`H.264 ${info.profile} with chroma format ${info.chromaFormatIdc} and ${info.bitDepth}-bit samples is not supported; ` +
				'publish 8-bit 4:2:0 (yuv420p)',
		);
	}
	return { codec: 'h264', ...info, sps: sps.map((s) => Buffer.from(s)), pps: pps.map((p) => Buffer.from(p)), avcC: buildAvcC(sps, pps) };
}

export function h264ConfigFromAvcC(buf: Buffer): { config: H264Config; nalLengthSize: number } {
	const rec = parseAvcC(buf);
	return { config: h264ConfigFromParameterSets(rec.sps, rec.pps), nalLengthSize: rec.nalLengthSize };
}

/** True when two configs describe the same parameter sets. */
export function sameH264Config(a: H264Config, b: H264Config): boolean {
	return a.avcC.equals(b.avcC);
}
