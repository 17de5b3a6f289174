import { createHmac, timingSafeEqual } from 'node:crypto';
import { Unauthorized } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { PublishGuard, PublishRequest } from '../core/stream.js';

export interface PublishKeyOptions {
	/** Static keys: stream NAME -> secret. */
	keys: Record<string, string>;
	/** Secret for signed keys `EXPIRY.SIGNATURE`; null turns them off. */
	hmacSecret: string | null;
	logger: Logger;
	/** Clock in ms, for tests. */
	now?: () => number;
}

function safeEqual(a: string, b: string): boolean {
	const ab = Buffer.from(a);
	const bb = Buffer.from(b);
	return ab.length === bb.length && timingSafeEqual(ab, bb);
}

/** The signature of a signed key: hex HMAC-SHA256 of `NAME:EXPIRY`. */
export function signPublishKey(secret: string, stream: string, expiresAtSec: number): string {
	const sig = createHmac('sha256', secret).update(`${stream}:${expiresAtSec}`).digest('hex');
	return `${expiresAtSec}.${sig}`;
}

/**
 * The publish key rules of the contract: with no keys configured anyone may
 * publish (and a warning is logged once); otherwise the key must match the
 * stream's static key or be a valid, unexpired signed key for that stream.
 */
export function publishKeyGuard(opts: PublishKeyOptions): PublishGuard {
	const now = opts.now ?? Date.now;
	const open = Object.keys(opts.keys).length === 0 && opts.hmacSecret === null;
	if (open) {
		opts.logger.warn('no publish keys configured: anyone who reaches the RTMP or HTTP port may publish');
	}
	return (req: PublishRequest): void => {
		if (open) return;
		const key = req.key;
		if (key === null || key === '') throw new Unauthorized(`stream ${req.stream} needs a publish key`);
		const expected = opts.keys[req.stream];
		if (expected !== undefined && safeEqual(key, expected)) return;
		if (opts.hmacSecret !== null) {
			const m = /^(\d{1,12})\.([0-9a-f]{64})$/.exec(key);
			if (m?.[1] !== undefined) {
				const expiry = Number(m[1]);
				if (expiry * 1000 < now()) throw new Unauthorized(`the publish key for ${req.stream} has expired`);
				if (safeEqual(signPublishKey(opts.hmacSecret, req.stream, expiry), key)) return;
			}
		}
		throw new Unauthorized(`wrong publish key for stream ${req.stream}`);
	};
}
