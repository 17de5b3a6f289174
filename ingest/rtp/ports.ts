import dgram from 'node:dgram';
import net from 'node:net';
import { Unavailable } from '../../server/common/errors.js';

/** An RTP socket and the RTCP socket on the port after it. */
export interface SocketPair {
	rtp: dgram.Socket;
	rtcp: dgram.Socket;
	port: number;
	rtcpPort: number;
}

/** Room for a keyframe burst at tens of Mbit/s; the kernel caps it at net.core.rmem_max. */
const RECV_BUFFER_BYTES = 4 * 1024 * 1024;

function bindSocket(ip: string, port: number): Promise<dgram.Socket> {
	const socket = dgram.createSocket({ type: net.isIPv6(ip) ? 'udp6' : 'udp4', reuseAddr: false });
	return new Promise((resolve, reject) => {
		const onError = (err: Error): void => {
			socket.close();
			reject(err);
		};
		socket.once('error', onError);
		socket.bind(port, ip, () => {
			socket.off('error', onError);
			try {
				socket.setRecvBufferSize(RECV_BUFFER_BYTES);
			} catch {
				// not fatal: the default buffer only makes drops likelier at high bitrates
			}
			resolve(socket);
		});
	});
}

function closeQuietly(s: dgram.Socket | null): void {
	try {
		s?.close();
	} catch {
		// already closed
	}
}

async function tryPair(ip: string, port: number): Promise<SocketPair | null> {
	let rtp: dgram.Socket | null = null;
	try {
		rtp = await bindSocket(ip, port);
		const bound = rtp.address().port;
		const rtcp = await bindSocket(ip, bound + 1);
		return { rtp, rtcp, port: bound, rtcpPort: bound + 1 };
	} catch {
		closeQuietly(rtp);
		return null;
	}
}

/**
 * Binds an RTP port and the one after it (RTCP for senders that do not mux).
 * With min = max = 0 the system picks; otherwise a pair inside [min, max] is
 * searched from a random start, so concurrent sessions rarely collide.
 */
export async function bindSocketPair(ip: string, min: number, max: number): Promise<SocketPair> {
	if (min === 0 && max === 0) {
		// The system's pick may have a busy neighbour: try a few picks.
		for (let attempt = 0; attempt < 32; attempt++) {
			const pair = await tryPair(ip, 0);
			if (pair) return pair;
		}
		throw new Unavailable(`no free UDP port pair on ${ip}`);
	}
	// Even RTP ports, as RFC 3550 suggests, each with the odd port after it.
	const first = min % 2 === 0 ? min : min + 1;
	const count = Math.floor((max - 1 - first) / 2) + 1;
	const start = Math.floor(Math.random() * Math.max(1, count));
	for (let i = 0; i < count; i++) {
		const pair = await tryPair(ip, first + 2 * ((start + i) % count));
		if (pair) return pair;
	}
	throw new Unavailable(`no free UDP port pair in ${min}-${max} on ${ip}: too many RTP sessions for the configured range`);
}
