import { randomBytes } from 'node:crypto';

/*
 * The only file names HLS serves or writes. Requests are matched against
 * these patterns before anything touches the disk, so a name can never
 * climb out of its stream's folder.
 */

/** A session id: 8 lowercase base-36 characters, unique per continuous playlist. */
export function newSessionId(): string {
	const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
	return [...randomBytes(8)].map((b) => alphabet[b % 36]).join('');
}

export const PLAYLIST_NAME = 'index.m3u8';
/** The first init segment of a session; later ones carry the session and epoch. */
export const FIRST_INIT_NAME = 'init.mp4';

export function initName(sid: string, epoch: number): string {
	return epoch === 0 ? FIRST_INIT_NAME : `init-${sid}-${epoch}.mp4`;
}

export function segmentName(sid: string, msn: number): string {
	return `seg-${sid}-${msn}.m4s`;
}

/** Parts are numbered across segments, so the next part's name is always known (preload hints). */
export function partName(sid: string, seq: number): string {
	return `part-${sid}-${seq}.m4s`;
}

export type HlsFile =
	| { kind: 'playlist' }
	| { kind: 'init'; name: string }
	| { kind: 'segment'; sid: string; msn: number }
	| { kind: 'part'; sid: string; seq: number };

const FILE_NAME = /^(?:(index\.m3u8)|(init\.mp4)|init-([a-z0-9]{8})-(\d{1,6})\.mp4|seg-([a-z0-9]{8})-(\d{1,10})\.m4s|part-([a-z0-9]{8})-(\d{1,12})\.m4s)$/;

/** Parses a requested file name; null for anything that is not one of ours. */
export function parseFileName(name: string): HlsFile | null {
	const m = FILE_NAME.exec(name);
	if (!m) return null;
	if (m[1]) return { kind: 'playlist' };
	if (m[2] || m[3]) return { kind: 'init', name };
	if (m[5] && m[6]) return { kind: 'segment', sid: m[5], msn: Number(m[6]) };
	if (m[7] && m[8]) return { kind: 'part', sid: m[7], seq: Number(m[8]) };
	return null;
}

/** Files the disk store may have written (and may therefore delete). */
export function isStoredFileName(name: string): boolean {
	const f = parseFileName(name);
	return f !== null && f.kind !== 'playlist';
}
