/**
 * The signaling contract between the subsecond server and its viewers, shared
 * by the server (signaling/), the browser library (client/web/lib) and the Node
 * viewer (client/node). Types and constants only: no DOM, no Node, no runtime
 * dependencies, so every side can import it. docs/signaling.md describes the
 * same contract for people writing clients in other languages.
 */

/** Bumped when a change would break existing clients; sent in the join answer. */
export const PROTOCOL_VERSION = 1;

/** Requests a client sends; each carries an acknowledgement callback. */
export const REQUESTS = ['join', 'createTransport', 'connectTransport', 'consume', 'resume', 'leave'] as const;
export type RequestName = (typeof REQUESTS)[number];

/** Events the server sends without being asked. */
export const SERVER_EVENTS = [
	'streamLive',
	'streamOffline',
	'consumerClosed',
	'transportClosed',
	'requestError',
	'kicked',
] as const;
export type ServerEventName = (typeof SERVER_EVENTS)[number];

/** Stable error codes of `{ ok: false, error: { code } }` (server/common/errors.ts). */
export const ERROR_CODES = [
	'bad_request',
	'unauthorized',
	'forbidden',
	'not_found',
	'conflict',
	'invalid_state',
	'rate_limited',
	'limit_exceeded',
	'unsupported',
	'unavailable',
	'closed',
	'timeout',
	'internal',
] as const;
export type SignalingErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorBody {
	code: SignalingErrorCode;
	message: string;
}

/** Every acknowledgement: `{ ok: true, ...result }` or `{ ok: false, error }`. */
export type Ack<T extends object = object> = ({ ok: true } & T) | { ok: false; error: ErrorBody };

// ---------------------------------------------------------------------------
// mediasoup's parameter objects as they travel as JSON. The server fills them
// from mediasoup and clients hand them to a mediasoup client library as is.

export type MediaKind = 'audio' | 'video';

export interface RtcpFeedback {
	type: string;
	parameter?: string;
}

export interface RtpCodecCapability {
	kind: MediaKind;
	mimeType: string;
	preferredPayloadType?: number;
	clockRate: number;
	channels?: number;
	parameters?: Record<string, string | number | boolean>;
	rtcpFeedback?: RtcpFeedback[];
}

export interface RtpHeaderExtension {
	kind: MediaKind;
	uri: string;
	preferredId: number;
	preferredEncrypt?: boolean;
	direction?: 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';
}

export interface RtpCapabilities {
	codecs?: RtpCodecCapability[];
	headerExtensions?: RtpHeaderExtension[];
}

export interface RtpCodecParameters {
	mimeType: string;
	payloadType: number;
	clockRate: number;
	channels?: number;
	parameters?: Record<string, string | number | boolean>;
	rtcpFeedback?: RtcpFeedback[];
}

export interface RtpEncodingParameters {
	ssrc?: number;
	rid?: string;
	codecPayloadType?: number;
	rtx?: { ssrc: number };
	dtx?: boolean;
	scalabilityMode?: string;
	maxBitrate?: number;
}

export interface RtpParameters {
	mid?: string;
	codecs: RtpCodecParameters[];
	headerExtensions?: { uri: string; id: number; encrypt?: boolean; parameters?: Record<string, unknown> }[];
	encodings?: RtpEncodingParameters[];
	rtcp?: { cname?: string; reducedSize?: boolean; mux?: boolean };
}

export interface IceParameters {
	usernameFragment: string;
	password: string;
	/** Always true: mediasoup is ICE-lite, the client does the connectivity checks. */
	iceLite?: boolean;
}

export interface IceCandidate {
	foundation: string;
	priority: number;
	/** Same as `ip`; newer mediasoup clients read this one. */
	address: string;
	ip: string;
	protocol: 'udp' | 'tcp';
	port: number;
	type: 'host';
	tcpType?: 'passive';
}

export type DtlsRole = 'auto' | 'client' | 'server';

export interface DtlsFingerprint {
	algorithm: string;
	value: string;
}

export interface DtlsParameters {
	role?: DtlsRole;
	fingerprints: DtlsFingerprint[];
}

/** An RTCIceServer (TURN/STUN) as given to RTCPeerConnection. */
export interface IceServer {
	urls: string | string[];
	username?: string;
	credential?: string;
}

// ---------------------------------------------------------------------------
// Requests and their results.

export interface JoinRequest {
	/** Stream name: 1 to 64 of A-Z a-z 0-9 _ . - starting with a letter or digit. */
	stream: string;
	/** Viewer JWT; required when the server has auth.viewer.required on. */
	token?: string;
}

export interface JoinResult {
	stream: string;
	/** Load these into the client's mediasoup Device. */
	routerRtpCapabilities: RtpCapabilities;
	/** Whether the stream has media to consume now; otherwise wait for `streamLive`. */
	live: boolean;
	/** TURN/STUN servers for the client's RTCPeerConnection (may be empty). */
	iceServers: IceServer[];
	protocolVersion: number;
}

/** No fields today; send `{}`. */
export type CreateTransportRequest = Record<string, never>;

export interface CreateTransportResult {
	id: string;
	iceParameters: IceParameters;
	iceCandidates: IceCandidate[];
	dtlsParameters: DtlsParameters;
	/** Close the transport if it is not DTLS-connected within this many ms. */
	connectTimeoutMs: number;
}

export interface ConnectTransportRequest {
	transportId: string;
	/** The client's DTLS role and certificate fingerprint(s). */
	dtlsParameters: DtlsParameters;
}

export type ConnectTransportResult = Record<string, never>;

export interface ConsumeRequest {
	transportId: string;
	/** What the client can receive (mediasoup-client: `device.rtpCapabilities`). */
	rtpCapabilities: RtpCapabilities;
}

export interface ConsumerDescription {
	id: string;
	producerId: string;
	kind: MediaKind;
	rtpParameters: RtpParameters;
	/** Always true: resume when ready to render. */
	paused: boolean;
}

export interface ConsumeResult {
	consumers: ConsumerDescription[];
}

export interface ResumeRequest {
	consumerId: string;
}

export type ResumeResult = Record<string, never>;

/** No fields today; send `{}`. */
export type LeaveRequest = Record<string, never>;
export type LeaveResult = Record<string, never>;

export interface RequestMap {
	join: [JoinRequest, JoinResult];
	createTransport: [CreateTransportRequest, CreateTransportResult];
	connectTransport: [ConnectTransportRequest, ConnectTransportResult];
	consume: [ConsumeRequest, ConsumeResult];
	resume: [ResumeRequest, ResumeResult];
	leave: [LeaveRequest, LeaveResult];
}

export type RequestOf<K extends RequestName> = RequestMap[K][0];
export type ResultOf<K extends RequestName> = RequestMap[K][1];

// ---------------------------------------------------------------------------
// Server events.

export interface StreamLiveEvent {
	stream: string;
}

export interface StreamOfflineEvent {
	stream: string;
	reason: string;
}

export interface ConsumerClosedEvent {
	consumerId: string;
	reason: string;
}

/** The transport and every consumer on it are gone (timeout, DTLS failure, worker died). */
export interface TransportClosedEvent {
	transportId: string;
	reason: string;
}

/** A request that could not be acknowledged (it carried no callback). */
export interface RequestErrorEvent {
	request: string;
	error: ErrorBody;
}

/** The server ended this viewer's session (admin, shutdown); do not reconnect blindly. */
export interface KickedEvent {
	reason: string;
}

/** socket.io event maps, for typed sockets on both ends. */
export interface ServerToClientEvents {
	streamLive: (ev: StreamLiveEvent) => void;
	streamOffline: (ev: StreamOfflineEvent) => void;
	consumerClosed: (ev: ConsumerClosedEvent) => void;
	transportClosed: (ev: TransportClosedEvent) => void;
	requestError: (ev: RequestErrorEvent) => void;
	kicked: (ev: KickedEvent) => void;
}

export type ClientToServerEvents = {
	[K in RequestName]: (req: RequestOf<K>, ack: (res: Ack<ResultOf<K>>) => void) => void;
};
