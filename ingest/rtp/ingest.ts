import express, { Router } from 'express';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { TypedEmitter } from '../../server/common/emitter.js';
import { BadRequest, ClosedError, NotFound } from '../../server/common/errors.js';
import type { Logger } from '../../server/common/logger.js';
import { assertStreamName } from '../../server/core/stream.js';
import type { StreamRegistry } from '../../server/core/stream.js';
import { parseSpropParameterSets } from './h264-depacketizer.js';
import { RtpSession } from './session.js';
import type { RtpAnswer, RtpIngestConfig, RtpSessionStats } from './session.js';

/** Optional POST body: what a sender that cannot follow our defaults tells us. */
const publishBodySchema = z.strictObject({
	video: z
		.strictObject({
			/** The payload type the sender uses for H.264, if it cannot send 96. */
			payloadType: z.number().int().min(96).max(127).optional(),
			/** SPS and PPS as in SDP (`sprop-parameter-sets`), for senders that do not repeat them in band. */
			spropParameterSets: z.string().min(1).max(4096).optional(),
			/** The port where the sender receives RTCP (receiver reports, PLI), like RTSP's client_port. */
			rtcpPort: z.number().int().min(1).max(65535).optional(),
		})
		.optional(),
	audio: z
		.strictObject({
			/** The payload type the sender uses for Opus, if it cannot send 111. */
			payloadType: z.number().int().min(96).max(127).optional(),
			/** The port where the sender receives RTCP (receiver reports). */
			rtcpPort: z.number().int().min(1).max(65535).optional(),
		})
		.optional(),
});
export type RtpPublishOptions = z.infer<typeof publishBodySchema>;

export interface RtpPublishRequest {
	stream: string;
	key: string | null;
	remoteAddress: string;
	options?: RtpPublishOptions;
}

export interface RtpIngestOptions {
	config: RtpIngestConfig;
	registry: StreamRegistry;
	/** The address senders are told to send to (config.announcedIp wins). */
	announcedIp: string;
	keyframeRequestMinIntervalMs: number;
	logger: Logger;
}

export interface RtpIngestEvents extends Record<string, unknown[]> {
	session: [session: RtpSession];
	close: [];
}

/** Why packets were not used, summed over sessions (TrackStats fields of the same names). */
export const DROP_REASONS = ['malformed', 'oversize', 'wrongPayloadType', 'foreign', 'late', 'outOfRange', 'badTimestamps', 'malformedRtcp'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** Counters over the ingest's lifetime, closed sessions included (for Prometheus counters). */
export interface RtpIngestTotals {
	sessions: number;
	packets: number;
	bytes: number;
	reordered: number;
	lost: { video: number; audio: number };
	dropped: Record<DropReason, number>;
	frames: number;
	framesDropped: number;
	keyframeRequestsSent: number;
}

function emptyTotals(): RtpIngestTotals {
	const dropped = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
	return { sessions: 0, packets: 0, bytes: 0, reordered: 0, lost: { video: 0, audio: 0 }, dropped, frames: 0, framesDropped: 0, keyframeRequestsSent: 0 };
}

function cloneTotals(t: RtpIngestTotals): RtpIngestTotals {
	return { ...t, lost: { ...t.lost }, dropped: { ...t.dropped } };
}

function addStats(t: RtpIngestTotals, s: RtpSessionStats): void {
	for (const kind of ['video', 'audio'] as const) {
		const m = s[kind];
		t.packets += m.packets;
		t.bytes += m.bytes;
		t.reordered += m.reordered;
		t.lost[kind] += m.lost;
		for (const r of DROP_REASONS) t.dropped[r] += m[r];
	}
	t.frames += s.video.frames.frames;
	t.framesDropped += s.video.frames.framesDropped;
	t.keyframeRequestsSent += s.video.keyframeRequestsSent;
}

/** The key the contract accepts: `Authorization: Bearer KEY`, else `?key=KEY`. */
function publishKey(req: Request): string | null {
	const auth = req.headers.authorization;
	if (auth !== undefined) {
		const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
		if (!m?.[1]) throw new BadRequest('the Authorization header must be `Bearer KEY`');
		return m[1];
	}
	const q = req.query.key;
	if (q === undefined) return null;
	if (typeof q !== 'string') throw new BadRequest('give the key parameter once');
	return q;
}

function remoteAddressOf(req: Request): string {
	return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}

function hasBody(req: Request): boolean {
	const len = req.headers['content-length'];
	return req.headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0');
}

function describeZod(err: z.ZodError): string {
	return err.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : 'body'}: ${i.message}`).join('; ');
}

/**
 * Plain RTP ingest: POST /api/streams/NAME/rtp opens a session (ports, SSRCs,
 * SDP), DELETE ends it. One session per stream name; a new POST takes over.
 */
export class RtpIngest extends TypedEmitter<RtpIngestEvents> {
	readonly name = 'rtp-ingest';
	readonly #opts: RtpIngestOptions;
	readonly #logger: Logger;
	readonly #sessions = new Map<string, RtpSession>();
	readonly #totals = emptyTotals();
	#closed = false;

	private constructor(opts: RtpIngestOptions) {
		super();
		this.#opts = opts;
		this.#logger = opts.logger.child({ component: 'rtp-ingest' });
		this.setListenerErrorLogger(this.#logger);
	}

	/** Sessions bind their own ports; the ingest itself binds nothing until the first POST. */
	static create(opts: RtpIngestOptions): Promise<RtpIngest> {
		return Promise.resolve(new RtpIngest(opts));
	}

	get closed(): boolean {
		return this.#closed;
	}

	/** The address put in answers. */
	get announcedIp(): string {
		return this.#opts.config.announcedIp ?? this.#opts.announcedIp;
	}

	session(stream: string): RtpSession | undefined {
		return this.#sessions.get(stream);
	}

	sessions(): RtpSession[] {
		return [...this.#sessions.values()];
	}

	/** Asks the RTP sender of a stream for a keyframe (RTCP PLI); false if none or rate-limited. */
	requestKeyFrame(stream: string): boolean {
		const s = this.#sessions.get(stream);
		return s !== undefined && !s.closed && s.requestKeyFrame('viewer');
	}

	/** Lifetime totals, live sessions included. */
	totals(): RtpIngestTotals {
		const t = cloneTotals(this.#totals);
		for (const s of this.#sessions.values()) addStats(t, s.stats());
		return t;
	}

	/** Checks the key, binds the ports and publishes (taking over the name). */
	async publish(req: RtpPublishRequest): Promise<RtpSession> {
		if (this.#closed) throw new ClosedError('RTP ingest');
		const stream = assertStreamName(req.stream);
		// Refusals come before anything else, and before any port is bound.
		await this.#opts.registry.authorizePublish({ stream, key: req.key, protocol: 'rtp', remoteAddress: req.remoteAddress });
		if (this.#closed) throw new ClosedError('RTP ingest');
		const sprop = req.options?.video?.spropParameterSets;
		const parsedSprop = sprop !== undefined ? { ...parseSpropParameterSets(sprop), text: sprop } : null;
		const session = await RtpSession.create({
			stream,
			registry: this.#opts.registry,
			remoteAddress: req.remoteAddress,
			config: this.#opts.config,
			announcedIp: this.announcedIp,
			keyframeRequestMinIntervalMs: this.#opts.keyframeRequestMinIntervalMs,
			videoPayloadType: req.options?.video?.payloadType,
			audioPayloadType: req.options?.audio?.payloadType,
			videoFeedbackPort: req.options?.video?.rtcpPort,
			audioFeedbackPort: req.options?.audio?.rtcpPort,
			sprop: parsedSprop,
			logger: this.#logger,
		});
		if (this.#closed) {
			session.close('server shutting down');
			throw new ClosedError('RTP ingest');
		}
		this.#sessions.set(stream, session);
		this.#totals.sessions++;
		session.once('close', () => {
			addStats(this.#totals, session.stats());
			if (this.#sessions.get(stream) === session) {
				this.#sessions.delete(stream);
				this.#opts.registry.get(stream)?.unannotate('rtp');
			}
		});
		this.#opts.registry.get(stream)?.annotate('rtp', () => session.summary());
		this.emit('session', session);
		return session;
	}

	/** Ends a stream's RTP session (same key rules as publishing). */
	async unpublish(req: Omit<RtpPublishRequest, 'options'>): Promise<void> {
		if (this.#closed) throw new ClosedError('RTP ingest');
		const stream = assertStreamName(req.stream);
		await this.#opts.registry.authorizePublish({ stream, key: req.key, protocol: 'rtp', remoteAddress: req.remoteAddress });
		const session = this.#sessions.get(stream);
		if (!session) throw new NotFound(`stream ${stream} has no RTP publisher`);
		session.close('ended by DELETE');
	}

	/** POST and DELETE /api/streams/:name/rtp; mount before the HTTP server listens. */
	routes(): Router {
		const r = Router();
		const json = express.json({ limit: '16kb', strict: true });
		r.post('/api/streams/:name/rtp', json, async (req: Request, res: Response) => {
			const stream = assertStreamName(req.params.name);
			const key = publishKey(req);
			let options: RtpPublishOptions | undefined;
			if (hasBody(req)) {
				if (!req.is('application/json')) throw new BadRequest('the request body, if any, must be application/json');
				const parsed = publishBodySchema.safeParse(req.body ?? {});
				if (!parsed.success) throw new BadRequest(`invalid request body: ${describeZod(parsed.error)}`);
				options = parsed.data;
			}
			const session = await this.publish({ stream, key, remoteAddress: remoteAddressOf(req), options });
			res.setHeader('Cache-Control', 'no-store');
			res.setHeader('Location', `/api/streams/${stream}`);
			res.status(201).json(session.answer satisfies RtpAnswer);
		});
		r.delete('/api/streams/:name/rtp', async (req: Request, res: Response) => {
			const stream = assertStreamName(req.params.name);
			await this.unpublish({ stream, key: publishKey(req), remoteAddress: remoteAddressOf(req) });
			res.status(204).end();
		});
		return r;
	}

	/** Ends every session. Idempotent. */
	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		for (const s of [...this.#sessions.values()]) s.close('server shutting down');
		this.#sessions.clear();
		this.emit('close');
		this.removeAllListeners();
	}
}
