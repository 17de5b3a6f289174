/**
 * A strict little media playlist parser for tests: it throws on anything a
 * player would choke on (missing header, EXTINF without URI, unquoted URIs,
 * parts after the preload hint, tags it does not know).
 */

export interface ParsedPart {
	uri: string;
	duration: number;
	independent: boolean;
}

export interface ParsedSegment {
	uri: string | null;
	duration: number | null;
	discontinuity: boolean;
	map: string;
	programDateTime: number | null;
	parts: ParsedPart[];
}

export interface ParsedPlaylist {
	version: number;
	targetDuration: number;
	mediaSequence: number;
	discontinuitySequence: number;
	partTarget: number | null;
	serverControl: Record<string, string>;
	independentSegments: boolean;
	/** Complete segments (with EXTINF), then at most one trailing entry of parts only. */
	segments: ParsedSegment[];
	preloadHint: string | null;
	ended: boolean;
}

export function parseAttributes(s: string): Record<string, string> {
	const out: Record<string, string> = {};
	const re = /([A-Z0-9-]+)=("[^"]*"|[^,]*)(,|$)/gy;
	let m: RegExpExecArray | null;
	let last = 0;
	while ((m = re.exec(s)) !== null) {
		const [, k, v] = m;
		out[k as string] = (v as string).startsWith('"') ? (v as string).slice(1, -1) : (v as string);
		last = re.lastIndex;
		if (last >= s.length) break;
	}
	if (last !== s.length) throw new Error(`malformed attribute list: ${s}`);
	return out;
}

export function parsePlaylist(text: string): ParsedPlaylist {
	const lines = text.split('\n');
	if (lines[0] !== '#EXTM3U') throw new Error('playlist does not start with #EXTM3U');
	if (!text.endsWith('\n')) throw new Error('playlist does not end with a newline');
	const p: ParsedPlaylist = {
		version: 1,
		targetDuration: NaN,
		mediaSequence: 0,
		discontinuitySequence: 0,
		partTarget: null,
		serverControl: {},
		independentSegments: false,
		segments: [],
		preloadHint: null,
		ended: false,
	};
	let map: string | null = null;
	// In an object: the helper closure below assigns it, which narrowing would not see.
	const st: { cur: ParsedSegment | null } = { cur: null };
	let pendingDuration: number | null = null;
	const segment = (needMap = true): ParsedSegment => {
		if (p.preloadHint !== null || p.ended) throw new Error('media after the preload hint or the end');
		if (needMap && map === null) throw new Error('media before EXT-X-MAP');
		st.cur ??= { uri: null, duration: null, discontinuity: false, map: map ?? '', programDateTime: null, parts: [] };
		if (st.cur.map === '' && map !== null) st.cur.map = map;
		return st.cur;
	};
	for (const line of lines.slice(1)) {
		if (line === '') continue;
		if (!line.startsWith('#')) {
			if (pendingDuration === null) throw new Error(`URI ${line} without EXTINF`);
			const s = segment();
			s.uri = line;
			s.duration = pendingDuration;
			p.segments.push(s);
			st.cur = null;
			pendingDuration = null;
			continue;
		}
		const colon = line.indexOf(':');
		const tag = colon >= 0 ? line.slice(0, colon) : line;
		const value = colon >= 0 ? line.slice(colon + 1) : '';
		switch (tag) {
			case '#EXT-X-VERSION':
				p.version = Number(value);
				break;
			case '#EXT-X-TARGETDURATION':
				if (!/^\d+$/.test(value)) throw new Error('EXT-X-TARGETDURATION must be an integer');
				p.targetDuration = Number(value);
				break;
			case '#EXT-X-MEDIA-SEQUENCE':
				p.mediaSequence = Number(value);
				break;
			case '#EXT-X-DISCONTINUITY-SEQUENCE':
				p.discontinuitySequence = Number(value);
				break;
			case '#EXT-X-PART-INF':
				p.partTarget = Number(parseAttributes(value)['PART-TARGET']);
				break;
			case '#EXT-X-SERVER-CONTROL':
				p.serverControl = parseAttributes(value);
				break;
			case '#EXT-X-INDEPENDENT-SEGMENTS':
				p.independentSegments = true;
				break;
			case '#EXT-X-MAP': {
				const uri = parseAttributes(value).URI;
				if (!uri) throw new Error('EXT-X-MAP without URI');
				map = uri;
				if (st.cur && (st.cur.parts.length > 0 || st.cur.programDateTime !== null)) throw new Error('EXT-X-MAP inside a segment');
				if (st.cur) st.cur.map = uri;
				break;
			}
			case '#EXT-X-DISCONTINUITY':
				if (st.cur && st.cur.parts.length > 0) throw new Error('EXT-X-DISCONTINUITY inside a segment');
				segment(false).discontinuity = true;
				break;
			case '#EXT-X-PROGRAM-DATE-TIME': {
				const t = Date.parse(value);
				if (!Number.isFinite(t)) throw new Error(`bad date ${value}`);
				segment().programDateTime = t;
				break;
			}
			case '#EXT-X-PART': {
				const a = parseAttributes(value);
				if (!a.URI || !a.DURATION) throw new Error('EXT-X-PART without URI or DURATION');
				segment().parts.push({ uri: a.URI, duration: Number(a.DURATION), independent: a.INDEPENDENT === 'YES' });
				break;
			}
			case '#EXTINF': {
				const m = /^(\d+(?:\.\d+)?),.*$/.exec(value);
				if (!m) throw new Error(`bad EXTINF ${value}`);
				pendingDuration = Number(m[1]);
				segment();
				break;
			}
			case '#EXT-X-PRELOAD-HINT': {
				const a = parseAttributes(value);
				if (a.TYPE !== 'PART' || !a.URI) throw new Error('unexpected preload hint');
				if (st.cur) p.segments.push(st.cur);
				st.cur = null;
				p.preloadHint = a.URI;
				break;
			}
			case '#EXT-X-ENDLIST':
				if (st.cur) throw new Error('EXT-X-ENDLIST after an incomplete segment');
				p.ended = true;
				break;
			default:
				throw new Error(`unexpected tag ${tag}`);
		}
	}
	if (pendingDuration !== null) throw new Error('EXTINF without URI at the end');
	if (st.cur) p.segments.push(st.cur);
	if (!Number.isInteger(p.targetDuration)) throw new Error('no EXT-X-TARGETDURATION');
	for (const s of p.segments) {
		if (s.duration !== null && Math.round(s.duration) > p.targetDuration) {
			throw new Error(`segment ${s.uri} of ${s.duration} s exceeds the target duration ${p.targetDuration}`);
		}
		if (p.partTarget !== null) {
			for (const part of s.parts) if (part.duration > p.partTarget + 1e-6) throw new Error(`part ${part.uri} exceeds PART-TARGET`);
		}
	}
	return p;
}
