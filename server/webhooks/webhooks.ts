import { createHmac } from 'node:crypto';
import { TypedEmitter } from '../common/emitter.js';
import { ClosedError, Forbidden, Unauthorized, Unavailable } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { BoundedQueue } from '../common/queue.js';
import type { Config } from '../config/schema.js';
import type { PublishGuard, PublishRequest, Publication, Stream, StreamRegistry, ViewerInfo } from '../core/stream.js';
import type { WebhookEvent, WebhookResult } from '../metrics/metrics.js';

export type NotificationEvent = Exclude<WebhookEvent, 'publish'>;

/** The body POSTed to the publish hook. */
export interface PublishHookPayload {
	event: 'publish';
	stream: string;
	protocol: string;
	remoteAddress: string;
	/** The key the publisher presented (null if none), so the hook can do its own auth. */
	key: string | null;
	timestamp: string;
}

export interface UnpublishPayload {
	event: 'unpublish';
	stream: string;
	publication: string;
	protocol: string;
	remoteAddress: string;
	reason: string;
	startedAt: string;
	durationMs: number;
	bytes: { video: number; audio: number; total: number };
	frames: { video: number; audio: number; keyframes: number };
}

export interface ViewerPayload {
	event: 'viewerJoin' | 'viewerLeave';
	stream: string;
	id: string;
	path: string;
	remoteAddress: string;
	joinedAt: string | null;
	/** On viewerLeave: how long the viewer stayed. */
	durationMs?: number;
}

/** Every notification also carries `timestamp` and a `seq` that grows by one per notification. */
export type NotificationPayload = (UnpublishPayload | ViewerPayload) & { seq: number; timestamp: string };

/** What the webhooks tell metrics; Metrics implements it. */
export interface WebhookMetrics {
	webhookResult(event: WebhookEvent, result: WebhookResult, seconds: number): void;
	webhookDropped(event: WebhookEvent, n?: number): void;
}

export interface WebhooksOptions {
	config: Config['webhooks'];
	registry: StreamRegistry;
	logger: Logger;
	metrics?: WebhookMetrics | null;
	/** Sent as User-Agent. */
	userAgent?: string;
	/** Notifications waiting to be sent; beyond it the oldest are dropped. */
	queueCapacity?: number;
	/** Notifications sent at the same time. */
	concurrency?: number;
	/** Attempts per notification (first try included). */
	attempts?: number;
	/** Delay before the first retry; doubles on each. */
	retryDelayMs?: number;
	/** How long close() waits for queued notifications before giving up on them. */
	drainTimeoutMs?: number;
}

export interface WebhooksEvents extends Record<string, unknown[]> {
	/** A notification was delivered (2xx). */
	delivered: [payload: NotificationPayload];
	/** A notification was given up (queue full, or every attempt failed). */
	dropped: [payload: NotificationPayload, why: 'queue_full' | 'failed' | 'closed'];
	close: [];
}

interface Job {
	url: string;
	payload: NotificationPayload;
}

type CallOutcome =
	| { kind: 'response'; status: number; body: string; contentType: string }
	| { kind: 'timeout' }
	| { kind: 'network'; message: string };

// A hook is a small JSON answer at most; never buffer more than this.
const MAX_BODY = 64 * 1024;

function truncate(s: string, n: number): string {
	return s.length > n ? `${s.slice(0, n)}…` : s;
}

/** Where a hook points, for logs: its URL may carry a secret in the path or query. */
function originOf(url: string): string {
	try {
		return new URL(url).origin;
	} catch {
		return 'invalid URL';
	}
}

/**
 * `sha256=HEX`, the HMAC-SHA256 of `TIMESTAMP.BODY`: covering the timestamp
 * lets a receiver refuse replays of an old, validly signed call.
 */
export function webhookSignature(secret: string, timestamp: string, body: string): string {
	return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/** Extracts a human-readable reason from a hook's answer body. */
function reasonFrom(body: string, contentType: string): string | null {
	const text = body.trim();
	if (!text) return null;
	if (/json/i.test(contentType) || text.startsWith('{')) {
		try {
			const j = JSON.parse(text) as unknown;
			if (typeof j === 'object' && j !== null) {
				const o = j as Record<string, unknown>;
				const r = o.reason ?? o.message ?? (o.error as Record<string, unknown> | undefined)?.message ?? o.error;
				if (typeof r === 'string' && r.trim()) return truncate(r.trim(), 200);
			}
			return null;
		} catch {
			// not JSON after all: fall through to text
		}
	}
	return /^text\/plain/i.test(contentType) ? truncate(text.split('\n')[0] ?? '', 200) : null;
}

/** A 2xx answer denies only with an explicit JSON `{ "allow": false }`. */
function deniedBy2xx(body: string): boolean {
	const text = body.trim();
	if (!text.startsWith('{')) return false;
	try {
		const j = JSON.parse(text) as unknown;
		return typeof j === 'object' && j !== null && (j as Record<string, unknown>).allow === false;
	} catch {
		return false;
	}
}

/**
 * Webhooks (config.webhooks). `publish` is a publish guard: the hook decides
 * whether a publish may go ahead, after the stream-key check. `unpublish`,
 * `viewerJoin` and `viewerLeave` are notifications: queued with a bound
 * (oldest dropped and counted), sent by a few concurrent senders with retries
 * and backoff, never awaited by anything on the media path.
 */
export class Webhooks extends TypedEmitter<WebhooksEvents> {
	readonly name = 'webhooks';
	readonly #cfg: Config['webhooks'];
	readonly #registry: StreamRegistry;
	readonly #logger: Logger;
	readonly #metrics: WebhookMetrics | null;
	readonly #userAgent: string;
	readonly #queue: BoundedQueue<Job>;
	readonly #concurrency: number;
	readonly #attempts: number;
	readonly #retryDelayMs: number;
	readonly #drainTimeoutMs: number;
	/** Aborts requests and retry waits in flight when closing. */
	readonly #abort = new AbortController();
	readonly #idleWaiters: (() => void)[] = [];
	#active = 0;
	#seq = 0;
	#closed = false;
	#closing: Promise<void> | null = null;

	constructor(opts: WebhooksOptions) {
		super();
		this.#cfg = opts.config;
		this.#registry = opts.registry;
		this.#logger = opts.logger.child({ component: 'webhooks' });
		this.setListenerErrorLogger(this.#logger);
		this.#metrics = opts.metrics ?? null;
		this.#userAgent = opts.userAgent ?? 'subsecond';
		this.#queue = new BoundedQueue(opts.queueCapacity ?? 1000);
		this.#concurrency = opts.concurrency ?? 4;
		this.#attempts = opts.attempts ?? 3;
		this.#retryDelayMs = opts.retryDelayMs ?? 500;
		this.#drainTimeoutMs = opts.drainTimeoutMs ?? 2000;

		const c = this.#cfg;
		if (c.publish) {
			this.#registry.addPublishGuard(this.publishGuard);
			this.#logger.info({ hook: originOf(c.publish), onFailure: c.publishOnFailure }, 'publish webhook on');
		}
		if (c.unpublish) this.#registry.on('unpublish', this.#onUnpublish);
		if (c.viewerJoin) this.#registry.on('viewerJoin', this.#onViewerJoin);
		if (c.viewerLeave) this.#registry.on('viewerLeave', this.#onViewerLeave);
	}

	/** Notifications waiting or being sent. */
	get pending(): number {
		return this.#queue.size + this.#active;
	}

	/** Notifications dropped because the queue was full, since start. */
	get dropped(): number {
		return this.#queue.dropped;
	}

	// ---- publish guard ----

	/** The publish guard; installed on the registry when config.webhooks.publish is set. */
	readonly publishGuard: PublishGuard = async (req: PublishRequest): Promise<void> => {
		const url = this.#cfg.publish;
		if (this.#closed) throw new ClosedError('webhooks');
		if (!url) return;
		const payload: PublishHookPayload = {
			event: 'publish',
			stream: req.stream,
			protocol: req.protocol,
			remoteAddress: req.remoteAddress,
			key: req.key,
			timestamp: new Date().toISOString(),
		};
		const log = this.#logger.child({ stream: req.stream, protocol: req.protocol, remoteAddress: req.remoteAddress });
		const started = performance.now();
		const out = await this.#call(url, payload);
		const seconds = (performance.now() - started) / 1000;
		if (out.kind === 'response') {
			const { status, body, contentType } = out;
			if (status >= 200 && status < 300) {
				if (deniedBy2xx(body)) {
					const reason = reasonFrom(body, contentType) ?? 'refused by the publish webhook';
					this.#metrics?.webhookResult('publish', 'denied', seconds);
					log.info({ status, reason }, 'publish webhook denied the publish');
					throw new Forbidden(reason);
				}
				this.#metrics?.webhookResult('publish', 'allowed', seconds);
				log.debug({ status }, 'publish webhook allowed the publish');
				return;
			}
			if (status === 401 || status === 403) {
				const reason = reasonFrom(body, contentType) ?? 'refused by the publish webhook';
				this.#metrics?.webhookResult('publish', 'denied', seconds);
				log.info({ status, reason }, 'publish webhook denied the publish');
				throw status === 401 ? new Unauthorized(reason) : new Forbidden(reason);
			}
			this.#metrics?.webhookResult('publish', 'http_error', seconds);
			return this.#publishFailure(log, `answered HTTP ${status}`);
		}
		this.#metrics?.webhookResult('publish', out.kind === 'timeout' ? 'timeout' : 'network_error', seconds);
		return this.#publishFailure(
			log,
			out.kind === 'timeout' ? `did not answer within ${this.#cfg.timeoutMs} ms` : `is unreachable (${out.message})`,
		);
	};

	#publishFailure(log: Logger, what: string): void {
		if (this.#cfg.publishOnFailure === 'allow') {
			log.warn(`publish webhook ${what}; allowing the publish (webhooks.publishOnFailure = allow)`);
			return;
		}
		log.warn(`publish webhook ${what}; refusing the publish (webhooks.publishOnFailure = deny)`);
		throw new Unavailable(`the publish authorization service ${what}; try again later`);
	}

	/** One POST with the configured timeout; never throws. */
	async #call(url: string, payload: object): Promise<CallOutcome> {
		const timeout = AbortSignal.timeout(this.#cfg.timeoutMs);
		const signal = AbortSignal.any([timeout, this.#abort.signal]);
		const body = JSON.stringify(payload);
		const headers: Record<string, string> = {
			'Content-Type': 'application/json',
			'User-Agent': this.#userAgent,
			'X-Subsecond-Event': (payload as { event: string }).event,
		};
		if (this.#cfg.secret) {
			// Signed per attempt: a retry carries a fresh timestamp.
			const timestamp = String(Math.floor(Date.now() / 1000));
			headers['X-Subsecond-Timestamp'] = timestamp;
			headers['X-Subsecond-Signature'] = webhookSignature(this.#cfg.secret, timestamp, body);
		}
		try {
			const res = await fetch(url, {
				method: 'POST',
				headers,
				body,
				// A redirect (say to a login page answering 200) must not count as an allow.
				redirect: 'manual',
				signal,
			});
			const answer = await this.#readBody(res);
			return { kind: 'response', status: res.status, body: answer, contentType: res.headers.get('content-type') ?? '' };
		} catch (err) {
			if (timeout.aborted) return { kind: 'timeout' };
			const e = err as Error & { cause?: { code?: string; message?: string } };
			return { kind: 'network', message: e.cause?.code ?? e.cause?.message ?? e.message };
		}
	}

	async #readBody(res: Response): Promise<string> {
		if (!res.body) return '';
		const reader = res.body.getReader() as ReadableStreamDefaultReader<Uint8Array>;
		const chunks: Uint8Array[] = [];
		let size = 0;
		for (;;) {
			const { done, value } = await reader.read();
			if (done) break;
			size += value.byteLength;
			if (size > MAX_BODY) {
				await reader.cancel();
				break;
			}
			chunks.push(value);
		}
		return Buffer.concat(chunks).toString('utf8');
	}

	// ---- notifications ----

	readonly #onUnpublish = (stream: Stream, pub: Publication, reason: string): void => {
		const s = pub.stats;
		this.#enqueue(this.#cfg.unpublish, {
			event: 'unpublish',
			stream: stream.name,
			publication: pub.id,
			protocol: pub.protocol,
			remoteAddress: pub.remoteAddress,
			reason,
			startedAt: new Date(pub.startedAt).toISOString(),
			durationMs: Date.now() - pub.startedAt,
			bytes: { video: s.videoBytes, audio: s.audioBytes, total: s.videoBytes + s.audioBytes },
			frames: { video: s.videoFrames, audio: s.audioFrames, keyframes: s.keyframes },
		});
	};

	#viewerPayload(event: 'viewerJoin' | 'viewerLeave', stream: Stream, v: Readonly<ViewerInfo>): ViewerPayload {
		const p: ViewerPayload = {
			event,
			stream: stream.name,
			id: v.id,
			path: v.path,
			remoteAddress: v.remoteAddress,
			joinedAt: v.joinedAt !== undefined ? new Date(v.joinedAt).toISOString() : null,
		};
		if (event === 'viewerLeave' && v.joinedAt !== undefined) p.durationMs = Date.now() - v.joinedAt;
		return p;
	}

	readonly #onViewerJoin = (stream: Stream, v: Readonly<ViewerInfo>): void => {
		this.#enqueue(this.#cfg.viewerJoin, this.#viewerPayload('viewerJoin', stream, v));
	};

	readonly #onViewerLeave = (stream: Stream, v: Readonly<ViewerInfo>): void => {
		this.#enqueue(this.#cfg.viewerLeave, this.#viewerPayload('viewerLeave', stream, v));
	};

	#enqueue(url: string | null, body: UnpublishPayload | ViewerPayload): void {
		if (!url || this.#closed) return;
		const payload: NotificationPayload = { ...body, seq: ++this.#seq, timestamp: new Date().toISOString() };
		const evicted = this.#queue.push({ url, payload });
		if (evicted) {
			this.#metrics?.webhookDropped(evicted.payload.event);
			this.#logger.warn({ event: evicted.payload.event, seq: evicted.payload.seq }, 'webhook queue full; dropped the oldest');
			this.emit('dropped', evicted.payload, 'queue_full');
		}
		this.#pump();
	}

	#pump(): void {
		while (!this.#closed && this.#active < this.#concurrency) {
			const job = this.#queue.shift();
			if (!job) break;
			this.#active++;
			void this.#deliver(job)
				.catch((err: unknown) => this.#logger.error({ err }, 'webhook delivery failed unexpectedly'))
				.finally(() => {
				this.#active--;
				this.#pump();
				if (this.pending === 0) for (const w of this.#idleWaiters.splice(0)) w();
			});
		}
	}

	async #deliver(job: Job): Promise<void> {
		const { event } = job.payload;
		const log = this.#logger.child({ event, stream: job.payload.stream, seq: job.payload.seq });
		for (let attempt = 1; attempt <= this.#attempts; attempt++) {
			if (this.#abort.signal.aborted) break;
			const started = performance.now();
			const out = await this.#call(job.url, job.payload);
			const seconds = (performance.now() - started) / 1000;
			if (out.kind === 'response' && out.status >= 200 && out.status < 300) {
				this.#metrics?.webhookResult(event, 'ok', seconds);
				log.debug({ status: out.status, attempt }, 'webhook delivered');
				this.emit('delivered', job.payload);
				return;
			}
			const result: WebhookResult = out.kind === 'response' ? 'http_error' : out.kind === 'timeout' ? 'timeout' : 'network_error';
			this.#metrics?.webhookResult(event, result, seconds);
			const detail = out.kind === 'response' ? `HTTP ${out.status}` : out.kind === 'timeout' ? 'timeout' : out.message;
			// A 4xx other than 408/429 will not get better by asking again.
			const permanent = out.kind === 'response' && out.status >= 400 && out.status < 500 && out.status !== 408 && out.status !== 429;
			if (permanent || attempt === this.#attempts) {
				log.warn({ attempt, detail }, 'webhook failed; giving up');
				break;
			}
			const delay = this.#retryDelayMs * 2 ** (attempt - 1);
			log.debug({ attempt, detail, delay }, 'webhook failed; retrying');
			if (!(await this.#sleep(delay))) break;
		}
		const why = this.#abort.signal.aborted ? 'closed' : 'failed';
		this.#metrics?.webhookDropped(event);
		this.emit('dropped', job.payload, why);
	}

	/** Resolves true after `ms`, or false as soon as the webhooks close. */
	#sleep(ms: number): Promise<boolean> {
		const signal = this.#abort.signal;
		if (signal.aborted) return Promise.resolve(false);
		return new Promise((resolve) => {
			const onAbort = (): void => {
				clearTimeout(timer);
				resolve(false);
			};
			const timer = setTimeout(() => {
				signal.removeEventListener('abort', onAbort);
				resolve(true);
			}, ms);
			signal.addEventListener('abort', onAbort, { once: true });
		});
	}

	/** Resolves when no notification is waiting or in flight, or after `timeoutMs` (false then). */
	idle(timeoutMs: number): Promise<boolean> {
		if (this.pending === 0) return Promise.resolve(true);
		return new Promise((resolve) => {
			const done = (): void => {
				clearTimeout(timer);
				resolve(true);
			};
			const timer = setTimeout(() => {
				const i = this.#idleWaiters.indexOf(done);
				if (i !== -1) this.#idleWaiters.splice(i, 1);
				resolve(false);
			}, timeoutMs);
			this.#idleWaiters.push(done);
		});
	}

	/**
	 * Stops listening, gives queued notifications (the unpublish events of a
	 * shutdown among them) a short while to go out, then aborts the rest.
	 */
	close(): Promise<void> {
		this.#closing ??= (async (): Promise<void> => {
			this.#registry.off('unpublish', this.#onUnpublish);
			this.#registry.off('viewerJoin', this.#onViewerJoin);
			this.#registry.off('viewerLeave', this.#onViewerLeave);
			await this.idle(this.#drainTimeoutMs);
			this.#closed = true;
			this.#abort.abort();
			for (let job = this.#queue.shift(); job; job = this.#queue.shift()) {
				this.#metrics?.webhookDropped(job.payload.event);
				this.emit('dropped', job.payload, 'closed');
			}
			await this.idle(1000);
			this.emit('close');
			this.removeAllListeners();
		})();
		return this.#closing;
	}
}
