import type { ProbeResults, RtcCounters } from '../types.js';
import type { AudioProbe } from './audio-reader.js';

/** What the probe pages expose to the benchmark driving them. */
export interface ProbeState {
	results: ProbeResults | null;
	/** Wall-clock ms when the page started joining. */
	joinedAt: number;
	error: string | null;
	/** Tone bursts heard, when the page plays audio. */
	audio?: AudioProbe | null;
	/** The viewer library's milestones (ms after watch()), when it is ours. */
	timeline?: Record<string, number>;
}

declare global {
	interface Window {
		probe?: ProbeState;
		startJanus?: (url: string, mountpoint: number) => Promise<void>;
		startOurs?: (server: string, stream: string) => Promise<void>;
		probeRtcCounters?: () => Promise<RtcCounters>;
	}
}
