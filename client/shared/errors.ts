import { ERROR_CODES } from './protocol.js';
import type { Ack, ErrorBody, SignalingErrorCode } from './protocol.js';

/** A refused request (`{ ok: false }`) or a request that got no answer in time. */
export class SignalingError extends Error {
	readonly code: SignalingErrorCode;
	/** The request that failed, e.g. `consume`. */
	readonly request: string;

	constructor(request: string, body: ErrorBody) {
		super(`${request}: ${body.message} (${body.code})`);
		this.name = 'SignalingError';
		this.code = body.code;
		this.request = request;
	}

	/** Errors a retry cannot fix: the viewer should stop and tell the user. */
	get fatal(): boolean {
		return (
			this.code === 'unauthorized' ||
			this.code === 'forbidden' ||
			this.code === 'bad_request' ||
			this.code === 'unsupported' ||
			this.code === 'limit_exceeded'
		);
	}
}

function isErrorBody(v: unknown): v is ErrorBody {
	if (typeof v !== 'object' || v === null) return false;
	const e = v as { code?: unknown; message?: unknown };
	return typeof e.message === 'string' && (ERROR_CODES as readonly unknown[]).includes(e.code);
}

/**
 * Turns an acknowledgement into its result or a SignalingError. Also maps
 * socket.io's ack timeout, which rejects with a plain Error.
 */
export async function unwrapAck<T extends object>(request: string, pending: Promise<unknown>): Promise<T> {
	let res: unknown;
	try {
		res = await pending;
	} catch (err) {
		const message = err instanceof Error ? err.message : String(err);
		throw new SignalingError(request, { code: 'timeout', message: `no answer from the server (${message})` });
	}
	if (typeof res !== 'object' || res === null || typeof (res as { ok?: unknown }).ok !== 'boolean') {
		throw new SignalingError(request, { code: 'internal', message: 'malformed acknowledgement' });
	}
	const ack = res as Ack<T>;
	if (ack.ok) return ack;
	throw new SignalingError(request, isErrorBody(ack.error) ? ack.error : { code: 'internal', message: 'malformed error' });
}
