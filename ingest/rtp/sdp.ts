import net from 'node:net';

export interface SdpMedia {
	port: number;
	rtcpPort: number;
	payloadType: number;
	ssrc: number;
}

export interface SdpOptions {
	stream: string;
	ip: string;
	sessionId: string;
	video: SdpMedia;
	audio: SdpMedia;
	/** Out-of-band H.264 parameter sets the publisher gave us, echoed back. */
	spropParameterSets?: string | null;
}

/**
 * The session as the receiving end describes it (RFC 4566/8866 offer/answer
 * semantics: c= and m= say where we want media): H.264 packetization-mode 1
 * and Opus on separate ports, RTCP muxed on the same port (RFC 5761) or on
 * the next one (RFC 3605 a=rtcp, the default of most senders), the SSRCs we
 * ask for. `a=recvonly` is our direction; the sender sends.
 */
export function buildSdp(o: SdpOptions): string {
	const family = net.isIPv6(o.ip) ? 'IP6' : 'IP4';
	const h264Fmtp = ['packetization-mode=1'];
	if (o.spropParameterSets) h264Fmtp.push(`sprop-parameter-sets=${o.spropParameterSets}`);
	const lines = [
		'v=0',
		`o=- ${o.sessionId} 1 IN ${family} ${o.ip}`,
		`s=subsecond ${o.stream}`,
		`c=IN ${family} ${o.ip}`,
		't=0 0',
		`m=video ${o.video.port} RTP/AVP ${o.video.payloadType}`,
		`a=rtpmap:${o.video.payloadType} H264/90000`,
		`a=fmtp:${o.video.payloadType} ${h264Fmtp.join(';')}`,
		`a=rtcp:${o.video.rtcpPort} IN ${family} ${o.ip}`,
		'a=rtcp-mux',
		`a=rtcp-fb:${o.video.payloadType} nack pli`,
		`a=ssrc:${o.video.ssrc} cname:subsecond-${o.stream}`,
		'a=recvonly',
		`m=audio ${o.audio.port} RTP/AVP ${o.audio.payloadType}`,
		`a=rtpmap:${o.audio.payloadType} opus/48000/2`,
		`a=fmtp:${o.audio.payloadType} minptime=10;useinbandfec=1`,
		`a=rtcp:${o.audio.rtcpPort} IN ${family} ${o.ip}`,
		'a=rtcp-mux',
		`a=ssrc:${o.audio.ssrc} cname:subsecond-${o.stream}`,
		'a=recvonly',
	];
	return lines.join('\r\n') + '\r\n';
}
