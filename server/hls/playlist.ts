/**
 * The media playlist text (RFC 8216bis, with Apple's Low-Latency HLS
 * extensions). Players that do not know LL-HLS ignore the EXT-X-PART,
 * EXT-X-PRELOAD-HINT and EXT-X-SERVER-CONTROL tags and play the complete
 * segments listed with EXTINF, so one playlist serves both kinds.
 */

/**
 * EXT-X-MAP in a media playlist needs version 6; the LL-HLS tags need no
 * higher version (only EXT-X-SKIP, which we do not use, needs 9), and a
 * lower version keeps older players happy.
 */
export const PLAYLIST_VERSION = 6;

export interface PlaylistPart {
	uri: string;
	durationS: number;
	independent: boolean;
}

export interface PlaylistSegment {
	uri: string;
	durationS: number;
	/** A new init segment or timeline starts here. */
	discontinuity: boolean;
	mapUri: string;
	/** Wall clock of the first sample (ms since the epoch). */
	programDateTime: number;
	/** Parts to list for this segment; null lists none (old segments). */
	parts: PlaylistPart[] | null;
	/** False for the segment still being written: only its parts are listed. */
	complete: boolean;
}

export interface PlaylistModel {
	targetDurationS: number;
	partTargetS: number;
	partHoldBackS: number;
	holdBackS: number;
	mediaSequence: number;
	discontinuitySequence: number;
	independentSegments: boolean;
	segments: PlaylistSegment[];
	preloadHintUri: string | null;
	ended: boolean;
}

function sec(n: number): string {
	return n.toFixed(5);
}

/** Renders a playlist; `uri` may add a query (a viewer token) to every URI. */
export function renderPlaylist(m: PlaylistModel, uri: (name: string) => string = (n) => n): string {
	const lines: string[] = [
		'#EXTM3U',
		`#EXT-X-VERSION:${PLAYLIST_VERSION}`,
		`#EXT-X-TARGETDURATION:${m.targetDurationS}`,
		`#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=${sec(m.partHoldBackS)},HOLD-BACK=${sec(m.holdBackS)}`,
		`#EXT-X-PART-INF:PART-TARGET=${sec(m.partTargetS)}`,
		`#EXT-X-MEDIA-SEQUENCE:${m.mediaSequence}`,
	];
	if (m.discontinuitySequence > 0) lines.push(`#EXT-X-DISCONTINUITY-SEQUENCE:${m.discontinuitySequence}`);
	if (m.independentSegments) lines.push('#EXT-X-INDEPENDENT-SEGMENTS');
	let map: string | null = null;
	for (const s of m.segments) {
		if (s.discontinuity) lines.push('#EXT-X-DISCONTINUITY');
		if (s.mapUri !== map) {
			lines.push(`#EXT-X-MAP:URI="${uri(s.mapUri)}"`);
			map = s.mapUri;
		}
		lines.push(`#EXT-X-PROGRAM-DATE-TIME:${new Date(s.programDateTime).toISOString()}`);
		for (const p of s.parts ?? []) {
			lines.push(`#EXT-X-PART:DURATION=${sec(p.durationS)},URI="${uri(p.uri)}"${p.independent ? ',INDEPENDENT=YES' : ''}`);
		}
		if (s.complete) {
			lines.push(`#EXTINF:${sec(s.durationS)},`, uri(s.uri));
		}
	}
	if (m.ended) {
		lines.push('#EXT-X-ENDLIST');
	} else if (m.preloadHintUri) {
		lines.push(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="${uri(m.preloadHintUri)}"`);
	}
	return `${lines.join('\n')}\n`;
}
