/** A tiny ISO BMFF reader for tests: parses back what server/hls/fmp4.ts writes. */

export interface Box {
	type: string;
	/** Offset of the box in the buffer it was read from. */
	start: number;
	size: number;
	/** The payload after the 8-byte header. */
	body: Buffer;
	children: Box[];
}

/** Boxes holding other boxes, and how many bytes precede their children. */
const CONTAINERS: Record<string, number> = {
	moov: 0,
	trak: 0,
	mdia: 0,
	minf: 0,
	dinf: 0,
	stbl: 0,
	mvex: 0,
	moof: 0,
	traf: 0,
	stsd: 8,
	dref: 8,
	avc1: 78,
	mp4a: 28,
};

export function parseBoxes(buf: Buffer, base = 0): Box[] {
	const out: Box[] = [];
	let off = 0;
	while (off < buf.length) {
		if (off + 8 > buf.length) throw new Error(`truncated box header at ${base + off}`);
		const size = buf.readUInt32BE(off);
		const type = buf.toString('latin1', off + 4, off + 8);
		if (size < 8 || off + size > buf.length) throw new Error(`bad size ${size} for box '${type}' at ${base + off}`);
		const body = buf.subarray(off + 8, off + size);
		const skip = CONTAINERS[type];
		const children = skip !== undefined ? parseBoxes(body.subarray(skip), base + off + 8 + skip) : [];
		out.push({ type, start: base + off, size, body, children });
		off += size;
	}
	return out;
}

/** All boxes at a path like 'moof/traf/trun'. */
export function findAll(boxes: Box[], path: string): Box[] {
	const [head, ...rest] = path.split('/');
	const here = boxes.filter((b) => b.type === head);
	if (rest.length === 0) return here;
	return here.flatMap((b) => findAll(b.children, rest.join('/')));
}

export function find(boxes: Box[], path: string): Box {
	const b = findAll(boxes, path)[0];
	if (!b) throw new Error(`no box at ${path}`);
	return b;
}

export function fullBoxHeader(b: Box): { version: number; flags: number } {
	const vf = b.body.readUInt32BE(0);
	return { version: vf >>> 24, flags: vf & 0xff_ffff };
}

export function tfdt(b: Box): number {
	const { version } = fullBoxHeader(b);
	return version === 1 ? Number(b.body.readBigUInt64BE(4)) : b.body.readUInt32BE(4);
}

export function tfhd(b: Box): { trackId: number; flags: number; defaultSampleFlags: number | null } {
	const { flags } = fullBoxHeader(b);
	const trackId = b.body.readUInt32BE(4);
	let off = 8;
	if (flags & 0x01) off += 8;
	if (flags & 0x02) off += 4;
	if (flags & 0x08) off += 4;
	if (flags & 0x10) off += 4;
	const defaultSampleFlags = flags & 0x20 ? b.body.readUInt32BE(off) : null;
	return { trackId, flags, defaultSampleFlags };
}

export interface TrunSample {
	duration: number | null;
	size: number | null;
	flags: number | null;
	cto: number | null;
}

export function trun(b: Box): { version: number; flags: number; dataOffset: number | null; samples: TrunSample[] } {
	const { version, flags } = fullBoxHeader(b);
	const count = b.body.readUInt32BE(4);
	let off = 8;
	let dataOffset: number | null = null;
	if (flags & 0x01) {
		dataOffset = b.body.readInt32BE(off);
		off += 4;
	}
	if (flags & 0x04) off += 4;
	const samples: TrunSample[] = [];
	for (let i = 0; i < count; i++) {
		const s: TrunSample = { duration: null, size: null, flags: null, cto: null };
		if (flags & 0x100) {
			s.duration = b.body.readUInt32BE(off);
			off += 4;
		}
		if (flags & 0x200) {
			s.size = b.body.readUInt32BE(off);
			off += 4;
		}
		if (flags & 0x400) {
			s.flags = b.body.readUInt32BE(off);
			off += 4;
		}
		if (flags & 0x800) {
			s.cto = version === 1 ? b.body.readInt32BE(off) : b.body.readUInt32BE(off);
			off += 4;
		}
		samples.push(s);
	}
	if (off !== b.body.length) throw new Error(`trun has ${b.body.length - off} stray bytes`);
	return { version, flags, dataOffset, samples };
}

export interface FragmentTrackInfo {
	trackId: number;
	baseMediaDecodeTime: number;
	samples: (TrunSample & { data: Buffer })[];
}

/** Reads every moof + mdat pair of a fragment stream with its samples' bytes. */
export function readFragments(buf: Buffer): { sequence: number; tracks: FragmentTrackInfo[] }[] {
	const boxes = parseBoxes(buf);
	const out: { sequence: number; tracks: FragmentTrackInfo[] }[] = [];
	for (let i = 0; i < boxes.length; i++) {
		const moof = boxes[i] as Box;
		if (moof.type !== 'moof') continue;
		const mdat = boxes[i + 1];
		if (mdat?.type !== 'mdat') throw new Error('moof without mdat');
		const sequence = find(moof.children, 'mfhd').body.readUInt32BE(4);
		const tracks: FragmentTrackInfo[] = [];
		for (const traf of findAll(moof.children, 'traf')) {
			const h = tfhd(find(traf.children, 'tfhd'));
			const t = trun(find(traf.children, 'trun'));
			let pos = moof.start + (t.dataOffset ?? 0);
			const samples = t.samples.map((s) => {
				const size = s.size ?? 0;
				if (pos < mdat.start + 8 || pos + size > mdat.start + mdat.size) throw new Error('sample outside its mdat');
				const data = buf.subarray(pos, pos + size);
				pos += size;
				return { ...s, flags: s.flags ?? h.defaultSampleFlags, data };
			});
			tracks.push({ trackId: h.trackId, baseMediaDecodeTime: tfdt(find(traf.children, 'tfdt')), samples });
		}
		out.push({ sequence, tracks });
	}
	return out;
}
