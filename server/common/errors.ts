/**
 * The error vocabulary. Each error carries a stable `code` that is mapped once
 * to HTTP statuses, signaling error codes and RTMP status codes.
 */
export type ErrorCode =
	| 'bad_request'
	| 'unauthorized'
	| 'forbidden'
	| 'not_found'
	| 'conflict'
	| 'invalid_state'
	| 'rate_limited'
	| 'limit_exceeded'
	| 'unsupported'
	| 'unavailable'
	| 'closed'
	| 'timeout'
	| 'internal';

export class SubsecondError extends Error {
	readonly code: ErrorCode;
	constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
		super(message, options);
		this.code = code;
		this.name = new.target.name;
	}
}

export class BadRequest extends SubsecondError {
	constructor(message: string, options?: ErrorOptions) {
		super('bad_request', message, options);
	}
}
export class Unauthorized extends SubsecondError {
	constructor(message: string, options?: ErrorOptions) {
		super('unauthorized', message, options);
	}
}
export class Forbidden extends SubsecondError {
	constructor(message: string, options?: ErrorOptions) {
		super('forbidden', message, options);
	}
}
export class NotFound extends SubsecondError {
	constructor(message: string, options?: ErrorOptions) {
		super('not_found', message, options);
	}
}
export class Conflict extends SubsecondError {
	constructor(message: string, options?: ErrorOptions) {
		super('conflict', message, options);
	}
}
/** A request that is valid on its own but not now (wrong order of calls). */
export class InvalidState extends SubsecondError {
	constructor(message: string, options?: ErrorOptions) {
		super('invalid_state', message, options);
	}
}
export class RateLimited extends SubsecondError {
	constructor(message: string, options?: ErrorOptions) {
		super('rate_limited', message, options);
	}
}
export class LimitExceeded extends SubsecondError {
	constructor(message: string, options?: ErrorOptions) {
		super('limit_exceeded', message, options);
	}
}
/** Well-formed input we recognise but do not handle (a codec, a feature). */
export class Unsupported extends SubsecondError {
	constructor(message: string, options?: ErrorOptions) {
		super('unsupported', message, options);
	}
}
export class Unavailable extends SubsecondError {
	constructor(message: string, options?: ErrorOptions) {
		super('unavailable', message, options);
	}
}
/** Use of an object after its close(). */
export class ClosedError extends SubsecondError {
	constructor(what: string) {
		super('closed', `${what} is closed`);
	}
}
export class Timeout extends SubsecondError {
	constructor(message: string, options?: ErrorOptions) {
		super('timeout', message, options);
	}
}
export class InternalError extends SubsecondError {
	constructor(message: string, options?: ErrorOptions) {
		super('internal', message, options);
	}
}

const HTTP_STATUS: Record<ErrorCode, number> = {
	bad_request: 400,
	unauthorized: 401,
	forbidden: 403,
	not_found: 404,
	conflict: 409,
	invalid_state: 409,
	rate_limited: 429,
	limit_exceeded: 429,
	unsupported: 415,
	unavailable: 503,
	closed: 410,
	timeout: 504,
	internal: 500,
};

/** RTMP NetStream/NetConnection status codes sent in onStatus / _error. */
const RTMP_STATUS: Record<ErrorCode, string> = {
	bad_request: 'NetStream.Publish.BadName',
	unauthorized: 'NetStream.Publish.Unauthorized',
	forbidden: 'NetStream.Publish.Rejected',
	not_found: 'NetStream.Play.StreamNotFound',
	conflict: 'NetStream.Publish.BadName',
	invalid_state: 'NetStream.Failed',
	rate_limited: 'NetConnection.Connect.Rejected',
	limit_exceeded: 'NetConnection.Connect.Rejected',
	unsupported: 'NetStream.Publish.Rejected',
	unavailable: 'NetStream.Failed',
	closed: 'NetStream.Failed',
	timeout: 'NetStream.Failed',
	internal: 'NetStream.Failed',
};

export function toSubsecondError(err: unknown): SubsecondError {
	if (err instanceof SubsecondError) return err;
	const message = err instanceof Error ? err.message : String(err);
	return new InternalError(message, { cause: err });
}

export function httpStatusOf(err: unknown): number {
	return HTTP_STATUS[toSubsecondError(err).code];
}

export function rtmpStatusOf(err: unknown): string {
	return RTMP_STATUS[toSubsecondError(err).code];
}

/** The `{ code, message }` shape used by the HTTP API and signaling acks. */
export function errorBody(err: unknown): { code: ErrorCode; message: string } {
	const e = toSubsecondError(err);
	// Internal errors may carry details that are none of the client's business.
	return { code: e.code, message: e.code === 'internal' ? 'internal error' : e.message };
}
