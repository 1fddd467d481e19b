// Band-limited resampling between any two rates, for the in-browser pipeline (dsp.js) as audio.resample (soxr at
// "HQ" quality) is for the server's: a Kaiser-windowed sinc of linear phase, aligned (output sample k lies at input
// time k * from / to, with zeros outside the signal), with soxr HQ's band edges: flat to 0.9136 of the lower rate's
// Nyquist frequency, stopped from that Nyquist frequency on. It is not soxr's own design (several stages, its own
// window), so its output is not soxr's; ATTENUATION_DB is the one whose transition band came closest to soxr's
// (48 kHz white noise to 22050 Hz and back: -96 dB of error to soxr's output below 7 kHz, -70 dB at 7-10 kHz,
// -50 to -59 dB at 10-11 kHz). The browser's own resampler (decodeAudioData, OfflineAudioContext) starts rolling
// off well inside that band (-12 dB of error to soxr's at 7-10 kHz in Chromium), where fullband.py measures its
// gain, and differs from browser to browser.

const PASSBAND_END = 0.9136; // of the lower rate's Nyquist frequency: soxr HQ's 1 - 0.05 / TO_3dB(120 dB)
const ATTENUATION_DB = 135;
// Output times fall on `to / gcd(from, to)` phases of an input sample; past MAX_PHASES (rates sharing few factors,
// such as 44101 Hz) they are rounded to that many, an error of at most 1/8192 of a sample in time (below -68 dB).
const MAX_PHASES = 4096;

/** The modified Bessel function of the first kind of order 0 (its power series). */
function besselI0(x) {
  let sum = 1;
  let term = 1;
  for (let k = 1; term > 1e-17 * sum; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
  }
  return sum;
}

/** Greatest common divisor of two positive integers. */
function gcd(a, b) {
  return b ? gcd(b, a % b) : a;
}

/**
 * The low-pass filter from `from` to `to` Hz, in input samples: {half: its half width, cutoff: twice the cut-off
 * frequency in cycles per input sample, beta: the Kaiser window's}, by Kaiser's formulas.
 */
function design(from, to) {
  const nyquist = Math.min(from, to) / 2;
  const transition = ((1 - PASSBAND_END) * nyquist) / from;
  return {
    half: (ATTENUATION_DB - 7.95) / (2.285 * 2 * Math.PI * transition) / 2,
    cutoff: ((1 + PASSBAND_END) * nyquist) / from,
    beta: 0.1102 * (ATTENUATION_DB - 8.7),
  };
}

/** The filter's taps for an output `fraction` (0 to 1) of a sample past the tap `span - 1`: 2 * span of them. */
function phaseTaps(fraction, span, { half, cutoff, beta }) {
  const taps = new Float32Array(2 * span);
  const norm = besselI0(beta);
  for (let j = 0; j < 2 * span; j++) {
    const t = fraction + span - 1 - j; // input samples from this tap to the output's time
    if (Math.abs(t) >= half) continue;
    const x = Math.PI * cutoff * t;
    const sinc = x === 0 ? 1 : Math.sin(x) / x;
    taps[j] = (cutoff * sinc * besselI0(beta * Math.sqrt(1 - (t / half) ** 2))) / norm;
  }
  return taps;
}

/**
 * `signal` (a Float32Array) from `from` to `to` Hz (whole numbers): a Float32Array of round(length * to / from)
 * samples; the signal itself when the rates are equal.
 */
export function resample(signal, from, to) {
  if (from === to) return signal;
  const filter = design(from, to);
  const span = Math.floor(filter.half) + 1; // taps each side of the output's time
  const divisor = gcd(from, to);
  const [step, phases] = [from / divisor, to / divisor]; // output k lies at input k * step / phases
  const grid = Math.min(phases, MAX_PHASES);
  const rows = new Array(grid + 1); // the taps of each phase on the grid, made as they are first needed
  const padded = new Float32Array(signal.length + 2 * span + Math.ceil(step / phases) + 1);
  padded.set(signal, span);
  const out = new Float32Array(Math.round((signal.length * to) / from));
  for (let k = 0; k < out.length; k++) {
    const position = k * step; // exact: below 2^53 for any file a browser can hold
    const base = Math.floor(position / phases);
    const phase = position - base * phases;
    const row = Math.round((phase / phases) * grid);
    const taps = (rows[row] ??= phaseTaps(row / grid, span, filter));
    let sum = 0;
    for (let j = 0, i = base + 1; j < taps.length; j++, i++) sum += taps[j] * padded[i]; // input base - span + 1 + j
    out[k] = sum;
  }
  return out;
}
