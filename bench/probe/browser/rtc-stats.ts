// Runs in the browser, imported first by the probe pages: keeps every
// RTCPeerConnection the page creates so the benchmark can read the receivers'
// own delay counters (jitter buffers, audio playout) at the start and end of a
// run, and say where the milliseconds between packet and screen go.
import type { RtcCounters } from '../types.js';

const peers: RTCPeerConnection[] = [];
const Native = window.RTCPeerConnection;
class TrackedPeerConnection extends Native {
	constructor(config?: RTCConfiguration) {
		super(config);
		peers.push(this);
	}
}
window.RTCPeerConnection = TrackedPeerConnection;

function zero(): RtcCounters['video'] {
	return { jitterBufferDelay: 0, jitterBufferTargetDelay: 0, jitterBufferEmittedCount: 0, totalDecodeTime: 0, framesDecoded: 0 };
}

function zeroAudio(): RtcCounters['audio'] {
	return {
		jitterBufferDelay: 0,
		jitterBufferTargetDelay: 0,
		jitterBufferMinimumDelay: 0,
		jitterBufferEmittedCount: 0,
		totalSamplesReceived: 0,
		concealedSamples: 0,
		insertedSamplesForDeceleration: 0,
		removedSamplesForAcceleration: 0,
	};
}

/** The cumulative receive-side delay counters of every peer connection, summed. */
export async function rtcCounters(): Promise<RtcCounters> {
	const out: RtcCounters = { video: zero(), audio: zeroAudio(), playoutDelay: 0, playoutSamples: 0 };
	for (const pc of peers) {
		if (pc.connectionState === 'closed') continue;
		const report = await pc.getStats();
		for (const s of report.values() as IterableIterator<Record<string, unknown>>) {
			const num = (k: string): number => (typeof s[k] === 'number' ? s[k] : 0);
			if (s.type === 'inbound-rtp' && s.kind === 'video') {
				const c = out.video;
				c.jitterBufferDelay += num('jitterBufferDelay');
				c.jitterBufferTargetDelay += num('jitterBufferTargetDelay');
				c.jitterBufferEmittedCount += num('jitterBufferEmittedCount');
				c.totalDecodeTime += num('totalDecodeTime');
				c.framesDecoded += num('framesDecoded');
			} else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
				const c = out.audio;
				for (const k of Object.keys(c) as (keyof typeof c)[]) c[k] += num(k);
			} else if (s.type === 'media-playout') {
				out.playoutDelay += num('totalPlayoutDelay');
				out.playoutSamples += num('totalSamplesCount');
			}
		}
	}
	return out;
}

window.probeRtcCounters = rtcCounters;
