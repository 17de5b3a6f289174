import { z } from 'zod';
import { BadRequest } from '../server/common/errors.js';
import type { RequestName } from '../client/shared/protocol.js';

// Run-time checks of every request payload. Top-level request objects are
// strict (a misspelt field is an error that names it); the mediasoup parameter
// objects inside are loose, because client libraries add fields of their own,
// but every field we read is checked and every string and list is bounded.

const id = z.string().min(1).max(64);
const kind = z.enum(['audio', 'video']);

const rtcpFeedback = z.looseObject({ type: z.string().min(1).max(64), parameter: z.string().max(64).optional() });

const codecParameters = z
	.record(z.string().max(64), z.union([z.string().max(256), z.number(), z.boolean()]))
	.refine((r) => Object.keys(r).length <= 32, { message: 'too many codec parameters' });

const rtpCodecCapability = z.looseObject({
	kind,
	mimeType: z.string().min(3).max(64).regex(/^(audio|video)\/[^/]+$/i, 'expected audio/NAME or video/NAME'),
	preferredPayloadType: z.number().int().min(0).max(127).optional(),
	clockRate: z.number().int().min(1).max(1_000_000),
	channels: z.number().int().min(1).max(16).optional(),
	parameters: codecParameters.optional(),
	rtcpFeedback: z.array(rtcpFeedback).max(32).optional(),
});

const rtpHeaderExtension = z.looseObject({
	kind,
	uri: z.string().min(1).max(256),
	preferredId: z.number().int().min(1).max(255),
	preferredEncrypt: z.boolean().optional(),
	direction: z.enum(['sendrecv', 'sendonly', 'recvonly', 'inactive']).optional(),
});

export const rtpCapabilitiesSchema = z.looseObject({
	codecs: z.array(rtpCodecCapability).max(128).optional(),
	headerExtensions: z.array(rtpHeaderExtension).max(64).optional(),
});

const dtlsParameters = z.looseObject({
	role: z.enum(['auto', 'client', 'server']).optional(),
	fingerprints: z
		.array(
			z.looseObject({
				algorithm: z.enum(['sha-1', 'sha-224', 'sha-256', 'sha-384', 'sha-512']),
				value: z.string().min(1).max(256).regex(/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})*$/, 'expected colon-separated hex bytes'),
			}),
		)
		.min(1)
		.max(8),
});

/** Requests that take no fields may also come with no payload at all. */
const empty = z.union([z.strictObject({}), z.undefined(), z.null()]).transform(() => ({}));

export const requestSchemas = {
	join: z.strictObject({
		stream: z.string().min(1).max(64),
		token: z.string().min(1).max(8192).optional(),
	}),
	createTransport: empty,
	connectTransport: z.strictObject({ transportId: id, dtlsParameters }),
	consume: z.strictObject({ transportId: id, rtpCapabilities: rtpCapabilitiesSchema }),
	resume: z.strictObject({ consumerId: id }),
	leave: empty,
} satisfies Record<RequestName, z.ZodType>;

export type ParsedRequest<K extends RequestName> = z.output<(typeof requestSchemas)[K]>;

/** Validates a payload; a failure is a BadRequest naming the fields at fault. */
export function parseRequest<K extends RequestName>(name: K, payload: unknown): ParsedRequest<K> {
	const result = requestSchemas[name].safeParse(payload);
	if (result.success) return result.data as ParsedRequest<K>;
	const issues = result.error.issues.slice(0, 4).map((i) => {
		const path = i.path.map(String).join('.');
		return `${path || 'payload'}: ${i.message}`;
	});
	const more = result.error.issues.length > 4 ? ` (and ${result.error.issues.length - 4} more)` : '';
	throw new BadRequest(`malformed ${name} request: ${issues.join('; ')}${more}`);
}
