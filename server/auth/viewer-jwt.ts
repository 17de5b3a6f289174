import { SignJWT, createRemoteJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import { Unauthorized, Unavailable } from '../common/errors.js';
import type { Logger } from '../common/logger.js';

/**
 * Decides whether `token` lets its holder watch `stream`; throws Unauthorized
 * (or Unavailable when the key server cannot be reached) if not. Used by
 * signaling at join and by HLS for `?token=`.
 */
export type ViewerVerifier = (stream: string, token: string | null | undefined) => Promise<void>;

export interface ViewerJwtOptions {
	/** Off: every stream is public and tokens are ignored. */
	required: boolean;
	/** HS256 shared secret. */
	jwtSecret: string | null;
	/** JWKS URL for asymmetric tokens (RS*, PS*, ES*, EdDSA). */
	jwksUrl: string | null;
	issuer: string | null;
	audience: string | null;
	logger?: Logger;
	/** Seconds of clock skew allowed on exp/nbf. */
	clockToleranceSec?: number;
	/** Clock for tests, in ms. */
	now?: () => number;
}

const ASYMMETRIC_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
/** Tokens are small; anything bigger is not one of ours and not worth parsing. */
const MAX_TOKEN_LENGTH = 8192;

/** Whether the claims grant `stream`: `stream` (a name or `*`) or `streams` (names, may hold `*`). */
export function claimsGrantStream(payload: JWTPayload, stream: string): boolean {
	const single = payload.stream;
	if (typeof single === 'string' && (single === '*' || single === stream)) return true;
	const many = payload.streams;
	if (Array.isArray(many)) return many.some((s) => s === '*' || s === stream);
	return false;
}

/** Builds the viewer token check from config.auth.viewer. */
export function viewerJwtVerifier(opts: ViewerJwtOptions): ViewerVerifier {
	if (!opts.required) return () => Promise.resolve();
	if (opts.jwtSecret === null && opts.jwksUrl === null) {
		throw new TypeError('viewer tokens are required but neither jwtSecret nor jwksUrl is set');
	}
	const secret = opts.jwtSecret === null ? null : new TextEncoder().encode(opts.jwtSecret);
	// jose caches the key set, refetches on an unknown kid (rate-limited by its
	// cooldown) and times out a slow key server.
	const jwks: JWTVerifyGetKey | null =
		opts.jwksUrl === null ? null : createRemoteJWKSet(new URL(opts.jwksUrl), { timeoutDuration: 5_000, cooldownDuration: 30_000 });
	const now = opts.now;

	return async (stream, token) => {
		if (token === null || token === undefined || token === '') {
			throw new Unauthorized(`stream ${stream} needs a viewer token`);
		}
		if (token.length > MAX_TOKEN_LENGTH) throw new Unauthorized('the viewer token is too long');
		let alg: string | undefined;
		try {
			alg = decodeProtectedHeader(token).alg;
		} catch {
			throw new Unauthorized('the viewer token is not a JWT');
		}
		const symmetric = alg === 'HS256';
		if (symmetric && secret === null) throw new Unauthorized('HS256 viewer tokens are not accepted here');
		if (!symmetric && (jwks === null || alg === undefined || !ASYMMETRIC_ALGS.includes(alg))) {
			throw new Unauthorized(`viewer tokens signed with ${alg ?? 'no algorithm'} are not accepted here`);
		}
		const verifyOpts = {
			algorithms: symmetric ? ['HS256'] : ASYMMETRIC_ALGS,
			requiredClaims: ['exp'],
			clockTolerance: opts.clockToleranceSec ?? 5,
			...(opts.issuer !== null ? { issuer: opts.issuer } : {}),
			...(opts.audience !== null ? { audience: opts.audience } : {}),
			...(now ? { currentDate: new Date(now()) } : {}),
		};
		let payload: JWTPayload;
		try {
			payload = symmetric && secret
				? (await jwtVerify(token, secret, verifyOpts)).payload
				: (await jwtVerify(token, jwks as JWTVerifyGetKey, verifyOpts)).payload;
		} catch (err) {
			throw mapJoseError(err, opts.logger);
		}
		if (!claimsGrantStream(payload, stream)) {
			throw new Unauthorized(`the viewer token does not grant stream ${stream}`);
		}
	};
}

function mapJoseError(err: unknown, logger: Logger | undefined): Error {
	if (err instanceof joseErrors.JWTExpired) return new Unauthorized('the viewer token has expired');
	if (err instanceof joseErrors.JWTClaimValidationFailed) {
		return new Unauthorized(`the viewer token was refused: ${err.claim} ${err.reason === 'missing' ? 'is missing' : 'does not match'}`);
	}
	if (err instanceof joseErrors.JWKSTimeout) {
		logger?.warn('the JWKS server did not answer in time');
		return new Unavailable('cannot check the viewer token now (key server timeout)');
	}
	// The key server answered, but not with a usable key set: our problem, not the viewer's.
	if (err instanceof joseErrors.JWKSInvalid || (err instanceof joseErrors.JOSEError && err.code === 'ERR_JOSE_GENERIC')) {
		logger?.warn({ err }, 'the JWKS server gave no usable key set');
		return new Unavailable('cannot check the viewer token now (key server error)');
	}
	if (err instanceof joseErrors.JOSEError) return new Unauthorized(`invalid viewer token (${err.code})`);
	// Network errors and bad JWKS documents come from fetch, not from jose.
	logger?.warn({ err }, 'cannot fetch the viewer JWKS');
	return new Unavailable('cannot check the viewer token now (key server unreachable)');
}

export interface SignViewerTokenOptions {
	secret: string;
	/** One stream, or `*` for all. */
	stream?: string;
	/** Several streams (may contain `*`). */
	streams?: string[];
	/** Lifetime in seconds. */
	expiresInSec: number;
	issuer?: string;
	audience?: string;
	subject?: string;
}

/** Signs an HS256 viewer token: for operators' tools, the docs' example and tests. */
export async function signViewerToken(o: SignViewerTokenOptions): Promise<string> {
	const claims: JWTPayload = {};
	if (o.stream !== undefined) claims.stream = o.stream;
	if (o.streams !== undefined) claims.streams = o.streams;
	let jwt = new SignJWT(claims)
		.setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
		.setIssuedAt()
		.setExpirationTime(Math.floor(Date.now() / 1000) + o.expiresInSec);
	if (o.issuer !== undefined) jwt = jwt.setIssuer(o.issuer);
	if (o.audience !== undefined) jwt = jwt.setAudience(o.audience);
	if (o.subject !== undefined) jwt = jwt.setSubject(o.subject);
	return jwt.sign(new TextEncoder().encode(o.secret));
}
