/** One frame a probe viewer presented, with its measured delay. */
export interface FrameSample {
	seq: number;
	/** Presentation time minus capture time, ms. */
	delayMs: number;
	/** For WebRTC in a browser: last packet received minus capture time, ms (network and server part). */
	receiveDelayMs: number | null;
	/** Wall-clock time of presentation, ms since the epoch. */
	presentedAt: number;
}

export interface ProbeResults {
	samples: FrameSample[];
	/** Presented frames whose code did not read (should be 0). */
	unreadable: number;
	/** Wall-clock ms of the first presented frame with a code, or null. */
	firstFrameAt: number | null;
	width: number;
	height: number;
}

/** Cumulative receiver counters from getStats() (seconds, as the stats spec gives them). */
export interface RtcCounters {
	video: { jitterBufferDelay: number; jitterBufferTargetDelay: number; jitterBufferEmittedCount: number; totalDecodeTime: number; framesDecoded: number };
	audio: {
		jitterBufferDelay: number;
		jitterBufferTargetDelay: number;
		jitterBufferMinimumDelay: number;
		jitterBufferEmittedCount: number;
		totalSamplesReceived: number;
		concealedSamples: number;
		insertedSamplesForDeceleration: number;
		removedSamplesForAcceleration: number;
	};
	/** media-playout: time audio samples spent in the output device's buffer, and how many. */
	playoutDelay: number;
	playoutSamples: number;
}
