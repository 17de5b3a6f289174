import type {
	ConsumerDescription,
	CreateTransportResult,
	DtlsParameters,
	MediaKind,
	RtpCodecParameters,
} from '../shared/protocol.js';

// The remote (server) side of the viewer's peer connection, written as an SDP
// offer the way mediasoup-client's RemoteSdp writes it for a receiving
// transport: mediasoup is ICE-lite, offers `actpass`, sends one SSRC per
// consumer, and bundles everything on one ICE/DTLS transport.

/** One m-section of the offer; kept across renegotiations so m-lines keep their order. */
export interface OfferSection {
	mid: string;
	kind: MediaKind;
	/** The consumer carried now; null when the section is idle (inactive). */
	consumer: ConsumerDescription | null;
	/** The codec last offered, reused while idle so the m-line stays valid. */
	codec: RtpCodecParameters;
}

function codecName(mimeType: string): string {
	const m = /^(audio|video)\/(.+)$/i.exec(mimeType);
	if (!m?.[2]) throw new TypeError(`invalid codec mimeType ${mimeType}`);
	return m[2];
}

function codecLines(c: RtpCodecParameters): string[] {
	const lines = [`a=rtpmap:${c.payloadType} ${codecName(c.mimeType)}/${c.clockRate}${c.channels && c.channels > 1 ? `/${c.channels}` : ''}`];
	const params = Object.entries(c.parameters ?? {})
		.map(([k, v]) => `${k}=${String(v)}`)
		.join(';');
	if (params) lines.push(`a=fmtp:${c.payloadType} ${params}`);
	for (const fb of c.rtcpFeedback ?? []) lines.push(`a=rtcp-fb:${c.payloadType} ${fb.type}${fb.parameter ? ` ${fb.parameter}` : ''}`);
	return lines;
}

/**
 * The offer for `sections`. `candidates` may be filtered by the caller (the
 * Node viewer uses UDP only). `version` must grow with every renegotiation.
 */
export function buildRemoteOffer(transport: CreateTransportResult, sections: readonly OfferSection[], version: number): string {
	const fp = transport.dtlsParameters.fingerprints.at(-1);
	if (!fp) throw new TypeError('the transport has no DTLS fingerprint');
	const out: string[] = [
		'v=0',
		`o=subsecond 10000 ${version} IN IP4 0.0.0.0`,
		's=-',
		't=0 0',
		'a=ice-lite',
		`a=fingerprint:${fp.algorithm} ${fp.value}`,
		'a=msid-semantic: WMS *',
		`a=group:BUNDLE ${sections.map((s) => s.mid).join(' ')}`,
		'a=extmap-allow-mixed',
	];
	for (const s of sections) {
		const codecs = s.consumer ? s.consumer.rtpParameters.codecs : [s.codec];
		out.push(
			`m=${s.kind} 7 UDP/TLS/RTP/SAVPF ${codecs.map((c) => c.payloadType).join(' ')}`,
			'c=IN IP4 127.0.0.1',
			`a=mid:${s.mid}`,
			s.consumer ? 'a=sendonly' : 'a=inactive',
			`a=ice-ufrag:${transport.iceParameters.usernameFragment}`,
			`a=ice-pwd:${transport.iceParameters.password}`,
		);
		for (const c of transport.iceCandidates) {
			const tcp = c.protocol === 'tcp' ? ` tcptype ${c.tcpType ?? 'passive'}` : '';
			out.push(`a=candidate:${c.foundation} 1 ${c.protocol} ${c.priority} ${c.address ?? c.ip} ${c.port} typ ${c.type}${tcp}`);
		}
		out.push('a=end-of-candidates', 'a=ice-options:renomination', 'a=setup:actpass', 'a=rtcp-mux', 'a=rtcp-rsize');
		for (const c of codecs) out.push(...codecLines(c));
		for (const ext of s.consumer?.rtpParameters.headerExtensions ?? []) out.push(`a=extmap:${ext.id} ${ext.uri}`);
		const enc = s.consumer?.rtpParameters.encodings?.[0];
		const cname = s.consumer?.rtpParameters.rtcp?.cname;
		if (s.consumer && enc?.ssrc !== undefined) {
			out.push(`a=msid:subsecond ${s.consumer.id}`);
			if (cname) out.push(`a=ssrc:${enc.ssrc} cname:${cname}`);
			else out.push(`a=ssrc:${enc.ssrc} msid:subsecond ${s.consumer.id}`);
			if (enc.rtx) {
				if (cname) out.push(`a=ssrc:${enc.rtx.ssrc} cname:${cname}`);
				out.push(`a=ssrc-group:FID ${enc.ssrc} ${enc.rtx.ssrc}`);
			}
		}
	}
	return `${out.join('\r\n')}\r\n`;
}

/** The local DTLS parameters from our answer: what connectTransport sends. */
export function dtlsParametersFromAnswer(sdp: string): DtlsParameters {
	const fp = /^a=fingerprint:(\S+) (\S+)/m.exec(sdp);
	if (!fp?.[1] || !fp[2]) throw new TypeError('the local answer has no DTLS fingerprint');
	const setup = /^a=setup:(\S+)/m.exec(sdp)?.[1] ?? 'active';
	// Our answer's setup decides our role; mediasoup takes the other one.
	const role = setup === 'passive' ? 'server' : 'client';
	return { role, fingerprints: [{ algorithm: fp[1].toLowerCase(), value: fp[2] }] };
}
