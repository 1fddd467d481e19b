// The sample rate an audio file's header states, read in the page, so that the browser decodes the file at its own
// rate: decodeAudioData always resamples to its context's rate, and no browser API tells a file's rate. Read: WAV
// (RIFF, RF64, BW64), FLAC, Ogg (Vorbis, Opus, FLAC) and MP3 (MPEG audio, after an ID3v2 tag, if any); other
// formats (M4A/AAC, raw AAC, WebM, ...) state none here: the caller picks a rate for them.

// Opus always decodes at 48 kHz; its header keeps the rate it was made from, which libsndfile (so the server) reads
// an Ogg Opus file at when Opus takes that rate. The browser decodes it at 48 kHz and resamples it to that rate.
const OPUS_RATES = [8000, 12000, 16000, 24000, 48000];
const MPEG_RATES = { 3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000] }; // by version
const MPEG_SCAN_BYTES = 4096; // how far past an ID3v2 tag the first MPEG frame may start (padding)

/** `length` bytes from `offset` as Latin-1 text (shorter past the end). */
function text(bytes, offset, length) {
  return String.fromCharCode(...bytes.subarray(offset, offset + length));
}

/** Little-endian unsigned 32-bit integer at `offset`. */
function uint32(bytes, offset) {
  return (bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) | (bytes[offset + 3] << 24)) >>> 0;
}

/** FLAC STREAMINFO's 20-bit rate, its block's data starting at `offset`. */
function streamInfoRate(bytes, offset) {
  return (bytes[offset + 10] << 12) | (bytes[offset + 11] << 4) | (bytes[offset + 12] >> 4);
}

/** The offset past an ID3v2 tag at `offset` (itself when there is none): its size is "syncsafe", 7 bits a byte. */
function pastId3(bytes, offset) {
  if (text(bytes, offset, 3) !== "ID3" || bytes.length < offset + 10) return offset;
  const size = [6, 7, 8, 9].reduce((sum, i) => (sum << 7) | (bytes[offset + i] & 0x7f), 0);
  return offset + 10 + size + (bytes[offset + 5] & 0x10 ? 10 : 0); // a footer too
}

/** A WAV file's rate: its "fmt " chunk's, the chunks following the 12-byte RIFF header. */
function wavRate(bytes) {
  for (let at = 12; at + 16 <= bytes.length; ) {
    if (text(bytes, at, 4) === "fmt ") return uint32(bytes, at + 12);
    const size = uint32(bytes, at + 4);
    at += 8 + size + (size % 2); // chunks are padded to an even size
  }
  return null;
}

/** An Ogg file's rate, from its first page's first packet (the codec's identification header). */
function oggRate(bytes) {
  const packet = 27 + bytes[26]; // past the page header and its segment table
  if (text(bytes, packet, 7) === "\x01vorbis") return uint32(bytes, packet + 12);
  if (text(bytes, packet, 8) === "OpusHead") {
    const made = uint32(bytes, packet + 12);
    return OPUS_RATES.includes(made) ? made : 48000;
  }
  if (text(bytes, packet, 5) === "\x7fFLAC") return streamInfoRate(bytes, packet + 17); // STREAMINFO's data
  return null;
}

/** An MPEG audio frame's rate if a frame header starts at `offset` (not ADTS AAC, whose layer bits are 0). */
function mpegRate(bytes, offset) {
  const [sync, flags, rates] = [bytes[offset], bytes[offset + 1], bytes[offset + 2]];
  if (sync !== 0xff || (flags & 0xe0) !== 0xe0) return undefined; // no frame here
  const table = MPEG_RATES[(flags >> 3) & 3];
  const valid = table && ((flags >> 1) & 3) !== 0 && rates >> 4 !== 15 && ((rates >> 2) & 3) !== 3;
  return valid ? table[(rates >> 2) & 3] : null;
}

/** The first MPEG frame's rate within MPEG_SCAN_BYTES of `offset`, null when a sync word there is not MPEG audio. */
function mp3Rate(bytes, offset) {
  for (let at = offset; at < Math.min(bytes.length - 2, offset + MPEG_SCAN_BYTES); at++) {
    const rate = mpegRate(bytes, at);
    if (rate !== undefined) return rate;
  }
  return null;
}

/** The sample rate the header of the file in `bytes` (a Uint8Array) states, or null if this page cannot read it. */
export function statedRate(bytes) {
  if (["RIFF", "RF64", "BW64"].includes(text(bytes, 0, 4)) && text(bytes, 8, 4) === "WAVE") return wavRate(bytes);
  if (text(bytes, 0, 4) === "OggS") return oggRate(bytes);
  const start = pastId3(bytes, 0);
  if (text(bytes, start, 4) === "fLaC") return streamInfoRate(bytes, start + 8); // STREAMINFO comes first
  return start > 0 || mpegRate(bytes, 0) !== undefined ? mp3Rate(bytes, start) : null;
}
