// The Node viewer: speaks the signaling contract through werift, for tests,
// load benchmarks and headless monitoring.
export { NodeViewer, NODE_RTP_CAPABILITIES, nodeRtpCapabilities } from './viewer.js';
export type { NodeViewerEvents, NodeViewerOptions, TrackCounters } from './viewer.js';
export { MediaDecoder, emptyDecodeStats } from './decoder.js';
export { H264Depacketizer, OggOpusWriter, opusPacketSamples } from './depacketize.js';
export type { DecodeStats } from './decoder.js';
export { startsH264Keyframe } from './h264.js';
export { buildRemoteOffer, dtlsParametersFromAnswer } from './sdp.js';
export type { OfferSection } from './sdp.js';
