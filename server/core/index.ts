export * from './media.js';
export * from './stream.js';
export * from './codecs/h264.js';
export * from './codecs/audio.js';
export { BitReader } from './codecs/bits.js';
