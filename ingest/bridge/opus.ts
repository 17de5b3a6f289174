import { BadRequest } from '../../server/common/errors.js';

/** Samples per frame at 48 kHz for each TOC configuration (RFC 6716 3.1). */
function frameSamples(config: number): number {
	if (config < 12) return [480, 960, 1920, 2880][config & 3] as number; // SILK: 10, 20, 40, 60 ms
	if (config < 16) return config & 1 ? 960 : 480; // Hybrid: 10, 20 ms
	return [120, 240, 480, 960][config & 3] as number; // CELT: 2.5, 5, 10, 20 ms
}

/** Duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 3.1). */
export function opusPacketSamples(packet: Buffer): number {
	if (packet.length < 1) throw new BadRequest('empty Opus packet');
	const toc = packet[0] ?? 0;
	const per = frameSamples(toc >> 3);
	const code = toc & 3;
	let frames: number;
	if (code === 0) frames = 1;
	else if (code === 1 || code === 2) frames = 2;
	else {
		if (packet.length < 2) throw new BadRequest('Opus code 3 packet without a frame count');
		frames = (packet[1] ?? 0) & 0x3f;
		if (frames === 0) throw new BadRequest('Opus code 3 packet with zero frames');
	}
	const total = per * frames;
	if (total > 5760) throw new BadRequest('Opus packet longer than 120 ms');
	return total;
}
