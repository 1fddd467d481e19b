// The spectral front end of spectral.py and the two pipelines of the Denoiser, so that a signal denoised in the
// browser matches the server's result: frame k is centred on sample k*hop with zeros outside the signal. For a
// magnitude network (patch gains) patches sit on the same absolute grid and blocks are planned as plan_block
// plans them (Denoiser.process_block); a spectrum network (complex mask, recurrent state) runs frame by frame as
// framestream.FrameStream runs it. The settings (SpectralConfig fields, snake_case as in /v1/models) always come
// from the server. A file at another rate goes through the model's rate and back as denoiser.Stream takes it, and
// above the model's rate keeps its top band as fullband.TopBand does (denoiseAtRate).

import { resample } from "./resample.js";

// fullband.py's: the top band's gain is the model's own, measured in these frames of its input and output.
const GAIN_BAND_HZ = [7000, 10000];
const GAIN_FRAME = 128; // samples at the model's rate
const GAIN_HOP = 64;
const RELEASE_SECONDS = 0.05;
const SILENCE = 1e-12; // energy added to both sides of the ratio: silence in, silence out is a gain of one

/** Periodic Hann window, as torch.hann_window(length, periodic=True). */
function hann(length) {
  return Float64Array.from({ length }, (_, i) => 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / length));
}

/** The settings plus what every transform reuses: windows and the DFT's cos/sin tables (bins x n_fft). */
export function setup(config) {
  // Patch gains are cross-faded with a Hann window; a model weighting them otherwise is not reproduced here.
  if ((config.patch_weighting ?? "hann") !== "hann") {
    throw new Error(`patch weighting "${config.patch_weighting}" is not supported in the browser`);
  }
  const n = config.n_fft;
  const bins = Math.floor(n / 2) + 1;
  const cos = new Float64Array(bins * n);
  const sin = new Float64Array(bins * n);
  for (let k = 0; k < bins; k++) {
    for (let t = 0; t < n; t++) {
      const angle = (2 * Math.PI * ((k * t) % n)) / n;
      cos[k * n + t] = Math.cos(angle);
      sin[k * n + t] = Math.sin(angle);
    }
  }
  return { ...config, bins, window: hann(n), patchWeights: hann(config.patch_frames), cos, sin };
}

/** Frame i covers samples [i*hop, i*hop + n_fft) of `signal`; no padding. Returns {re, im, frames}, frame-major. */
export function stft(signal, s) {
  const { n_fft: n, hop_length: hop, bins, window, cos, sin } = s;
  const frames = Math.floor((signal.length - n) / hop) + 1;
  const re = new Float64Array(frames * bins);
  const im = new Float64Array(frames * bins);
  const x = new Float64Array(n);
  for (let f = 0; f < frames; f++) {
    for (let t = 0; t < n; t++) x[t] = signal[f * hop + t] * window[t];
    for (let k = 0; k < bins; k++) {
      // n_fft is odd (255) by default, so a direct DFT: no power-of-two FFT applies.
      let a = 0;
      let b = 0;
      for (let t = 0, row = k * n; t < n; t++, row++) {
        a += x[t] * cos[row];
        b -= x[t] * sin[row];
      }
      re[f * bins + k] = a;
      im[f * bins + k] = b;
    }
  }
  return { re, im, frames };
}

/** Overlap-add of the frames' inverse DFTs times the window -> {signal, envelope (summed squared window)}. */
export function istft({ re, im, frames }, s) {
  const { n_fft: n, hop_length: hop, bins, window, cos, sin } = s;
  const length = (frames - 1) * hop + n;
  const signal = new Float64Array(length);
  const envelope = new Float64Array(length);
  const y = new Float64Array(n);
  for (let f = 0; f < frames; f++) {
    y.fill(0);
    for (let k = 0; k < bins; k++) {
      // irfft: the DC bin (and Nyquist, for an even n_fft) counts once and its imaginary part is ignored.
      const single = k === 0 || 2 * k === n;
      const a = ((single ? 1 : 2) * re[f * bins + k]) / n;
      const b = single ? 0 : (2 * im[f * bins + k]) / n;
      for (let t = 0, row = k * n; t < n; t++, row++) y[t] += a * cos[row] - b * sin[row];
    }
    for (let t = 0; t < n; t++) {
      signal[f * hop + t] += y[t] * window[t];
      envelope[f * hop + t] += window[t] * window[t];
    }
  }
  return { signal, envelope };
}

/** Scaled log-magnitudes, (20*log10(max(|X|, amin)) - db_offset) / db_scale, frame-major. */
export function features({ re, im }, s) {
  const out = new Float32Array(re.length);
  for (let i = 0; i < re.length; i++) {
    out[i] = (20 * Math.log10(Math.max(Math.hypot(re[i], im[i]), s.amin)) - s.db_offset) / s.db_scale;
  }
  return out;
}

/** Frame-major features -> patches [patch][bin][frame] every patch_hop frames, as spectral.frames_to_patches. */
export function toPatches(feats, frames, s) {
  const { bins, patch_frames: length, patch_hop: step } = s;
  const count = Math.floor((frames - length) / step) + 1;
  const patches = new Float32Array(count * bins * length);
  for (let p = 0; p < count; p++) {
    for (let t = 0; t < length; t++) {
      const source = (p * step + t) * bins;
      for (let b = 0; b < bins; b++) patches[(p * bins + b) * length + t] = feats[source + b];
    }
  }
  return { patches, count };
}

/** Patch gains [patch][bin][frame] -> frame-major gains, cross-faded as spectral.overlap_add_patches. */
export function overlapAddPatches(gains, count, frames, s) {
  const { bins, patch_frames: length, patch_hop: step, patchWeights: weights } = s;
  const total = new Float64Array(frames * bins);
  const norm = new Float64Array(frames);
  for (let p = 0; p < count; p++) {
    for (let t = 0; t < length; t++) {
      const f = p * step + t;
      norm[f] += weights[t];
      for (let b = 0; b < bins; b++) total[f * bins + b] += weights[t] * gains[(p * bins + b) * length + t];
    }
  }
  for (let f = 0; f < frames; f++) {
    const scale = 1 / Math.max(norm[f], 1e-6);
    for (let b = 0; b < bins; b++) total[f * bins + b] *= scale;
  }
  return total;
}

/** spectral.plan_block: the frames, and so the samples, that output frames [first, last) need. */
export function planBlock(first, last, s) {
  const { n_fft: n, hop_length: hop, patch_frames: length, patch_hop: step } = s;
  const reach = Math.floor(Math.floor(n / 2) / hop) + 1;
  const firstPatch = Math.floor((first - reach - length) / step) + 1;
  const lastPatch = Math.ceil((last + reach) / step) - 1;
  const contextFirst = firstPatch * step;
  const contextLast = lastPatch * step + length;
  return {
    inputStart: contextFirst * hop - Math.floor(n / 2),
    inputStop: (contextLast - 1) * hop - Math.floor(n / 2) + n,
    outputStart: first * hop,
    outputStop: last * hop,
  };
}

/** Samples [start, stop) of `signal`, zeros outside it. */
function excerpt(signal, start, stop) {
  const out = new Float64Array(stop - start);
  const from = Math.max(0, start);
  const to = Math.min(signal.length, stop);
  for (let i = from; i < to; i++) out[i - start] = signal[i];
  return out;
}

/** Run `work` (sync or async), adding its seconds to `timings[stage]`. */
export async function timed(timings, stage, work) {
  const started = performance.now();
  const result = await work();
  timings[stage] = (timings[stage] || 0) + (performance.now() - started) / 1000;
  return result;
}

/**
 * Denoise one channel at the model's rate, block by block as Denoiser does; returns a Float32Array of its length.
 * `runModel(patches, count, onBatch)` resolves to the gains, same layout, calling `onBatch(fraction of the patches
 * done)`; `onProgress(fraction of the blocks done)` counts the current block by that fraction; `timings` gains
 * seconds per stage.
 */
export async function denoiseSignal(signal, s, { strength, gainFloor, runModel, onProgress, timings = {} }) {
  const { hop_length: hop, patch_hop: step } = s;
  const blockFrames = 64 * step; // any multiple of patch_hop gives the same result; this bounds memory
  const lastFrame = Math.ceil(Math.ceil(signal.length / hop) / step) * step;
  const blocks = Math.ceil(lastFrame / blockFrames);
  const out = new Float32Array(signal.length);
  for (let block = 0; block < blocks; block++) {
    const first = block * blockFrames;
    const plan = planBlock(first, Math.min(first + blockFrames, lastFrame), s);
    const { spec, patches, count } = await timed(timings, "stft", () => {
      const spec = stft(excerpt(signal, plan.inputStart, plan.inputStop), s);
      return { spec, ...toPatches(features(spec, s), spec.frames, s) };
    });
    const onBatch = (done) => onProgress((block + done) / blocks);
    const gains = await timed(timings, "model", () => runModel(patches, count, onBatch));
    await timed(timings, "istft", () => {
      const gain = overlapAddPatches(gains, count, spec.frames, s);
      for (let i = 0; i < gain.length; i++) {
        const g = Math.max(1 - strength * (1 - gain[i]), gainFloor);
        spec.re[i] *= g;
        spec.im[i] *= g;
      }
      const { signal: folded, envelope } = istft(spec, s);
      const stop = Math.min(plan.outputStop, signal.length);
      for (let i = plan.outputStart; i < stop; i++) {
        out[i] = folded[i - plan.inputStart] / envelope[i - plan.inputStart];
      }
    });
  }
  return out;
}

/** Frames [from, from + count) of a frame-major spectrum -> float32 [part: re, im][bin][frame], the network's input. */
function spectrumParts({ re, im }, from, count, bins) {
  const parts = new Float32Array(2 * bins * count);
  for (let j = 0; j < count; j++) {
    for (let k = 0; k < bins; k++) {
      parts[k * count + j] = re[(from + j) * bins + k];
      parts[(bins + k) * count + j] = im[(from + j) * bins + k];
    }
  }
  return parts;
}

/**
 * Multiply the spectrum's frames [from, count) by the mask's, at `strength` and kept at least `gainFloor` in
 * magnitude (framestream.strengthened); the mask is [part][bin][frame] over `count` frames.
 */
function applyMask(spec, mask, from, count, s, strength, gainFloor) {
  const { bins } = s;
  for (let j = from; j < count; j++) {
    for (let k = 0; k < bins; k++) {
      const real = strength * mask[k * count + j] + 1 - strength;
      const imag = strength * mask[(bins + k) * count + j];
      const scale = Math.max(gainFloor / Math.max(Math.hypot(real, imag), 1e-12), 1);
      const i = j * bins + k;
      const [a, b] = [spec.re[i], spec.im[i]];
      spec.re[i] = scale * (a * real - b * imag);
      spec.im[i] = scale * (a * imag + b * real);
    }
  }
}

/**
 * Denoise one channel with a spectrum network, frame by frame as framestream.FrameStream does; returns a
 * Float32Array of its length. `runFrames(parts, count)` resolves to the mask ([part][bin][frame], float32) of the
 * frames `lookahead` before those of `parts` (spectrumParts), carrying the network's state from call to call; it
 * gets `blockFrames` frames a call (the result is the same for any number). `onProgress(fraction of the frames
 * done)`; `timings` gains seconds per stage.
 */
export async function denoiseFrames(
  signal,
  s,
  { strength, gainFloor, lookahead, runFrames, onProgress, timings = {}, blockFrames = 256 },
) {
  const { n_fft: n, hop_length: hop, bins } = s;
  const half = Math.floor(n / 2);
  const frameStart = (frame) => frame * hop - half;
  const frames = Math.floor((signal.length - 1 + half) / hop) + 1; // those touching the signal
  const total = frames + lookahead; // then frames of silence, so that the last ones get their masks
  const out = new Float32Array(signal.length);
  let tail = { signal: new Float64Array(n - hop), envelope: new Float64Array(n - hop) }; // overlap-add carried over
  for (let first = 0; first < total; first += blockFrames) {
    const count = Math.min(blockFrames, total - first);
    const masked = first - lookahead; // the call's masks are for frames [masked, masked + count)
    const { spec, parts } = await timed(timings, "stft", () => {
      const spec = stft(excerpt(signal, frameStart(masked), frameStart(first + count - 1) + n), s);
      return { spec, parts: spectrumParts(spec, lookahead, count, bins) };
    });
    const mask = await timed(timings, "model", () => runFrames(parts, count));
    const skip = Math.max(0, -masked); // masks of frames before the signal's first
    if (skip < count) {
      await timed(timings, "istft", () => {
        applyMask(spec, mask, skip, count, s, strength, gainFloor);
        const kept = { re: spec.re.subarray(skip * bins), im: spec.im.subarray(skip * bins), frames: count - skip };
        const { signal: folded, envelope } = istft(kept, s);
        for (let i = 0; i < n - hop; i++) {
          folded[i] += tail.signal[i];
          envelope[i] += tail.envelope[i];
        }
        const done = kept.frames * hop; // samples before the next frame's start: no later frame touches them
        const start = frameStart(masked + skip);
        for (let i = Math.max(0, -start); i < done && start + i < signal.length; i++) {
          out[start + i] = folded[i] / envelope[i];
        }
        tail = { signal: folded.subarray(done), envelope: envelope.subarray(done) };
      });
    }
    onProgress((first + count) / total);
  }
  return out;
}

/**
 * Energies in GAIN_BAND_HZ of `frames` Hann-windowed frames of GAIN_FRAME samples every GAIN_HOP, zeros past the
 * end of `signal` (at `rate`): a DFT of the band's bins only.
 */
function bandEnergies(signal, frames, rate) {
  const window = hann(GAIN_FRAME);
  const bins = Array.from({ length: GAIN_FRAME / 2 + 1 }, (_, k) => k).filter((k) => {
    const frequency = (k * rate) / GAIN_FRAME;
    return frequency >= GAIN_BAND_HZ[0] && frequency <= GAIN_BAND_HZ[1];
  });
  const angle = (k, t) => (2 * Math.PI * ((k * t) % GAIN_FRAME)) / GAIN_FRAME;
  const cos = bins.map((k) => Float64Array.from(window, (w, t) => w * Math.cos(angle(k, t))));
  const sin = bins.map((k) => Float64Array.from(window, (w, t) => w * Math.sin(angle(k, t))));
  const energies = new Float64Array(frames);
  for (let f = 0; f < frames; f++) {
    const frame = signal.subarray(f * GAIN_HOP, f * GAIN_HOP + GAIN_FRAME); // shorter at the end: zeros past it
    for (let b = 0; b < bins.length; b++) {
      let [re, im] = [0, 0];
      for (let t = 0; t < frame.length; t++) {
        re += frame[t] * cos[b][t];
        im += frame[t] * sin[b][t];
      }
      energies[f] += re * re + im * im;
    }
  }
  return energies;
}

/**
 * fullband.TopBand's gain of each frame, from the model's input and output at its `rate`: the square root of their
 * band energies' ratio, at most one, with an instant attack and a release of RELEASE_SECONDS.
 */
export function topBandGains(modelIn, modelOut, rate) {
  const frames = Math.max(1, Math.ceil((modelIn.length - GAIN_FRAME) / GAIN_HOP) + 1); // the last one padded
  const [before, after] = [modelIn, modelOut].map((signal) => bandEnergies(signal, frames, rate));
  const release = Math.exp(-GAIN_HOP / (RELEASE_SECONDS * rate));
  const gains = new Float64Array(frames);
  for (let f = 0; f < frames; f++) {
    const raw = Math.min(Math.sqrt((after[f] + SILENCE) / (before[f] + SILENCE)), 1);
    gains[f] = f ? Math.max(raw, gains[f - 1] * release) : raw;
  }
  return gains;
}

/**
 * The gain at model-rate `position`: frame f's is reached a hop after its end and ramped linearly between those
 * points, clamped before the first and after the last (np.interp), so a sample's gain needs only past frames.
 */
function gainAt(gains, position) {
  const t = (position - GAIN_FRAME - GAIN_HOP) / GAIN_HOP;
  if (t <= 0) return gains[0];
  const f = Math.floor(t);
  if (f >= gains.length - 1) return gains[gains.length - 1];
  return gains[f] + (t - f) * (gains[f + 1] - gains[f]);
}

/** `samples` Float32Array samples of `signal`: cropped, or padded with zeros (audio.fit_frames). */
function fit(signal, samples) {
  if (signal.length >= samples) return signal.subarray(0, samples);
  const out = new Float32Array(samples);
  out.set(signal);
  return out;
}

/**
 * Denoise one channel at its own `rate` with `denoise` (resolves to the model-rate signal's result, of its length),
 * as denoiser.Stream does: resampled to `modelRate` and back; above it, plus the top band, the input less its
 * model-rate version brought back (x - up(down(x)), so that the bands add up to the input exactly), times the
 * model's gain (topBandGains). Resolves to a Float32Array of the signal's length; `timings` gains `resample` (the
 * top band's gain included).
 */
export async function denoiseAtRate(signal, rate, modelRate, denoise, timings = {}) {
  const modelIn = await timed(timings, "resample", () => resample(signal, rate, modelRate));
  const modelOut = await denoise(modelIn);
  return timed(timings, "resample", () => {
    const out = fit(resample(modelOut, modelRate, rate), signal.length);
    if (rate <= modelRate) return out;
    const lows = fit(resample(modelIn, modelRate, rate), signal.length);
    const gains = topBandGains(modelIn, modelOut, modelRate);
    for (let i = 0; i < out.length; i++) out[i] += gainAt(gains, (i * modelRate) / rate) * (signal[i] - lows[i]);
    return out;
  });
}
