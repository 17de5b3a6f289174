import { Router } from 'express';
import type { NextFunction, Request, Response } from 'express';
import { BadRequest, NotFound, Unavailable } from '../common/errors.js';
import { isValidStreamName } from '../core/stream.js';
import { parseFileName } from './names.js';
import type { HlsFile } from './names.js';
import type { HlsSession } from './session.js';

export const PLAYLIST_TYPE = 'application/vnd.apple.mpegurl';
export const INIT_TYPE = 'video/mp4';
/** The registered type of ISO BMFF media segments (RFC 8216bis, Apple's HLS authoring spec). */
export const SEGMENT_TYPE = 'video/iso.segment';
const IMMUTABLE = 'public, max-age=31536000, immutable';
const NO_CACHE = 'no-cache';
/** hls.js reads Age on playlists; players doing ranges need the range headers. */
const EXPOSED = 'Age, Date, Content-Length, Content-Range, Accept-Ranges';

export interface HlsRequest {
	stream: string;
	fileName: string;
	file: HlsFile;
	query: URLSearchParams;
}

/**
 * Parses `/hls/<stream>/<file>?query` from the raw request URL, before any
 * normalisation: dot segments, encoded slashes, backslashes, NUL and
 * anything that is not one of our file names are refused with 400; paths of
 * the wrong shape are 404.
 */
export function parseHlsUrl(originalUrl: string): HlsRequest {
	const q = originalUrl.indexOf('?');
	const rawPath = q >= 0 ? originalUrl.slice(0, q) : originalUrl;
	const query = new URLSearchParams(q >= 0 ? originalUrl.slice(q + 1) : '');
	if (!rawPath.startsWith('/hls/')) throw new NotFound(`no HLS resource at ${rawPath}`);
	const segments = rawPath.slice('/hls/'.length).split('/');
	const decoded = segments.map((seg) => {
		try {
			return decodeURIComponent(seg);
		} catch {
			throw new BadRequest('malformed percent-encoding in the HLS path');
		}
	});
	for (const seg of decoded) {
		if (seg === '' || seg.includes('..') || /[/\\\0]/.test(seg) || seg !== seg.trim()) {
			throw new BadRequest('invalid HLS path');
		}
	}
	if (decoded.length !== 2) throw new NotFound(`no HLS resource at ${rawPath}`);
	const [stream, fileName] = decoded as [string, string];
	if (!isValidStreamName(stream)) throw new BadRequest('invalid stream name in the HLS path');
	const file = parseFileName(fileName);
	if (!file) throw new BadRequest(`invalid HLS file name ${JSON.stringify(fileName.slice(0, 64))}`);
	return { stream, fileName, file, query };
}

/** A non-negative decimal integer query parameter, or null if absent. */
export function intParam(query: URLSearchParams, name: string): number | null {
	const v = query.get(name);
	if (v === null) return null;
	if (!/^\d{1,9}$/.test(v)) throw new BadRequest(`${name} must be a non-negative integer`);
	return Number(v);
}

export interface HlsHttpContext {
	session(stream: string): HlsSession | undefined;
	/** Throws Unauthorized when the request may not watch this stream. */
	authorize(stream: string, token: string | null): Promise<void>;
	/** Counts the client as an HLS viewer of the stream. */
	touchViewer(stream: string, req: Request, token: string | null): void;
	blockingTimeoutMs: number;
	/** Reads a segment that is no longer in memory; null if not on disk. */
	diskPath(stream: string, name: string): string | null;
	/** Bytes of playlists and media sent (metrics). */
	bytesOut(stream: string, n: number): void;
}

/** The express routes: GET/HEAD /hls/:stream/:file. */
export function hlsRouter(ctx: HlsHttpContext): Router {
	const r = Router();
	r.use('/hls', (req: Request, res: Response, next: NextFunction) => {
		if (req.method !== 'GET' && req.method !== 'HEAD') {
			next();
			return;
		}
		handle(ctx, req, res).catch(next);
	});
	return r;
}

async function handle(ctx: HlsHttpContext, req: Request, res: Response): Promise<void> {
	const hr = parseHlsUrl(req.originalUrl);
	const token = hr.query.get('token');
	const session = ctx.session(hr.stream);
	if (!session) throw new NotFound(`stream ${hr.stream} has no HLS playlist (it is not live)`);
	await ctx.authorize(hr.stream, token);
	ctx.touchViewer(hr.stream, req, token);
	res.setHeader('Access-Control-Expose-Headers', EXPOSED);
	res.once('finish', () => {
		const sent = Number(res.getHeader('Content-Length') ?? 0);
		if (req.method === 'GET' && res.statusCode < 300 && sent > 0) ctx.bytesOut(hr.stream, sent);
	});
	const abort = new AbortController();
	// 'close' on the response fires when the client goes away before we answer.
	res.once('close', () => abort.abort());
	switch (hr.file.kind) {
		case 'playlist':
			return servePlaylist(ctx, session, hr, token, req, res, abort.signal);
		case 'init': {
			const data = session.init(hr.fileName);
			if (!data) throw new NotFound(`no ${hr.fileName} for stream ${hr.stream}`);
			// init.mp4 is reused by the next session of the stream; the others are unique.
			sendBuffers(req, res, [data], INIT_TYPE, hr.fileName === 'init.mp4' ? NO_CACHE : IMMUTABLE);
			return;
		}
		case 'part': {
			const { sid, seq } = hr.file;
			if (sid !== session.sid) throw new NotFound(`part ${hr.fileName} is not in the current playlist`);
			let part = session.part(seq);
			if (!part && seq >= session.nextPartSeq && seq <= session.nextPartSeq + 2 && session.live) {
				// A preload hint: answer as soon as the part is written.
				const ok = await session.waitForPart(seq, ctx.blockingTimeoutMs, abort.signal);
				if (abort.signal.aborted) return;
				if (!ok && session.live && session.nextPartSeq <= seq) throw new Unavailable(`part ${hr.fileName} was not ready in time`);
				part = session.part(seq);
			}
			if (!part?.data) throw new NotFound(`part ${hr.fileName} is not available`);
			sendBuffers(req, res, [part.data], SEGMENT_TYPE, IMMUTABLE);
			return;
		}
		case 'segment': {
			const { sid, msn } = hr.file;
			if (sid !== session.sid) throw new NotFound(`segment ${hr.fileName} is not in the current playlist`);
			const seg = session.segment(msn);
			if (seg?.complete && seg.chunks) {
				sendBuffers(req, res, seg.chunks, SEGMENT_TYPE, IMMUTABLE);
				return;
			}
			const file = seg?.complete ? ctx.diskPath(hr.stream, hr.fileName) : null;
			if (!file) throw new NotFound(`segment ${hr.fileName} is not available`);
			await sendFile(res, file);
			return;
		}
	}
}

async function servePlaylist(
	ctx: HlsHttpContext,
	session: HlsSession,
	hr: HlsRequest,
	token: string | null,
	req: Request,
	res: Response,
	signal: AbortSignal,
): Promise<void> {
	const msn = intParam(hr.query, '_HLS_msn');
	const part = intParam(hr.query, '_HLS_part');
	if (part !== null && msn === null) throw new BadRequest('_HLS_part needs _HLS_msn');
	if (msn !== null) {
		const state = session.directive(msn, part);
		if (state === 'bad') {
			throw new BadRequest(`_HLS_msn=${msn}${part !== null ? ` _HLS_part=${part}` : ''} is too far beyond the live edge`);
		}
		if (state === 'wait') {
			const ok = await session.waitFor(msn, part, ctx.blockingTimeoutMs, signal);
			if (signal.aborted) return;
			if (!ok) throw new Unavailable(`segment ${msn}${part !== null ? ` part ${part}` : ''} was not ready in time`);
		}
	} else if (!session.hasMedia) {
		// The stream just went live: answer with the first part instead of a 404.
		const ok = await session.waitForMedia(ctx.blockingTimeoutMs, signal);
		if (signal.aborted) return;
		if (!ok) throw new Unavailable(`stream ${hr.stream} has no media yet`);
	}
	const suffix = token !== null ? `?token=${encodeURIComponent(token)}` : '';
	const body = session.playlist(suffix ? (n) => n + suffix : undefined);
	res.setHeader('Content-Type', PLAYLIST_TYPE);
	res.setHeader('Cache-Control', NO_CACHE);
	res.setHeader('Content-Length', Buffer.byteLength(body));
	if (req.method === 'HEAD') res.end();
	else res.end(body);
}

/** Parses a single `bytes=` range; null means the whole body; throws for an unsatisfiable one. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null {
	if (!header) return null;
	const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
	if (!m) return null; // multiple or odd ranges: send everything, which RFC 9110 allows
	const [, a, b] = m;
	let start: number;
	let end: number;
	if (a === '' && b === '') return null;
	if (a === '') {
		const n = Number(b);
		if (n === 0) throw new RangeError('unsatisfiable');
		start = Math.max(0, size - n);
		end = size - 1;
	} else {
		start = Number(a);
		end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
	}
	if (start >= size || end < start) throw new RangeError('unsatisfiable');
	return { start, end };
}

function sendBuffers(req: Request, res: Response, chunks: Buffer[], type: string, cache: string): void {
	let size = 0;
	for (const c of chunks) size += c.length;
	res.setHeader('Content-Type', type);
	res.setHeader('Cache-Control', cache);
	res.setHeader('Accept-Ranges', 'bytes');
	let range: { start: number; end: number } | null;
	try {
		range = parseRange(req.headers.range, size);
	} catch {
		res.status(416).setHeader('Content-Range', `bytes */${size}`);
		res.end();
		return;
	}
	const start = range?.start ?? 0;
	const end = range?.end ?? size - 1;
	if (range) {
		res.status(206);
		res.setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
	}
	res.setHeader('Content-Length', end - start + 1);
	if (req.method === 'HEAD') {
		res.end();
		return;
	}
	let off = 0;
	for (const c of chunks) {
		const from = Math.max(start - off, 0);
		const to = Math.min(end + 1 - off, c.length);
		if (to > from) res.write(from === 0 && to === c.length ? c : c.subarray(from, to));
		off += c.length;
	}
	res.end();
}

function sendFile(res: Response, file: string): Promise<void> {
	return new Promise((resolve, reject) => {
		res.sendFile(
			file,
			{
				headers: { 'Content-Type': SEGMENT_TYPE, 'Cache-Control': IMMUTABLE },
				cacheControl: false,
				lastModified: false,
				acceptRanges: true,
				dotfiles: 'deny',
			},
			(err?: Error) => {
				if (!err) resolve();
				else if (res.headersSent) resolve();
				else reject(new NotFound('segment file is gone'));
			},
		);
	});
}
