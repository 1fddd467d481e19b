// Denoising in this browser: denoise-worker.js runs the model (ONNX Runtime Web) and dsp.js in a module worker,
// so the page stays responsive; here the page decodes the file, hands its channels over and encodes the result.
// The file never leaves the page. The file is decoded at its own rate, read from its header (samplerate.js), so
// that nothing but dsp.js resamples it (the browser's resampler differs from browser to browser and rolls off
// early); a file whose rate the page cannot read (M4A/AAC, WebM, ...) is decoded at FALLBACK_RATE by the browser.

import { timed } from "./dsp.js";
import { statedRate } from "./samplerate.js";

const FALLBACK_RATE = 48000; // the usual rate of the formats whose rate is not read, and above the model's

const pending = new Map(); // request id -> {resolve, reject, onProgress}
let worker = null;
let nextId = 0;

/** The worker, started on first use; if it fails, what was waiting fails with it and the next call starts another. */
function startWorker() {
  const started = new Worker(new URL("./denoise-worker.js", import.meta.url), { type: "module" });
  started.onmessage = ({ data }) => {
    const request = pending.get(data.id);
    if ("progress" in data) return request.onProgress(data.progress);
    pending.delete(data.id);
    if ("error" in data) request.reject(new Error(data.error));
    else request.resolve(data.result);
  };
  started.onerror = (event) => {
    event.preventDefault();
    const error = new Error(event.message || "the denoising worker could not start");
    for (const request of pending.values()) request.reject(error);
    pending.clear();
    started.terminate();
    worker = null;
  };
  return started;
}

/** Send `message` to the worker, moving `transfer`'s buffers; resolves to its result. */
function ask(message, transfer = [], onProgress = () => {}) {
  worker ??= startWorker();
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onProgress });
    worker.postMessage({ id, ...message }, transfer);
  });
}

/** Resolves once the worker has loaded ONNX Runtime Web; rejects with a one-line reason when it cannot. */
export function checkRuntime() {
  return ask({ check: true });
}

/** Decode an audio file to an AudioBuffer at `rate`, resampled by the browser when the file's rate differs. */
export async function decode(blob, rate) {
  return decodeBytes(await blob.arrayBuffer(), rate);
}

/** decode, of the file's bytes (an ArrayBuffer, detached by it). */
async function decodeBytes(bytes, rate) {
  try {
    return await new OfflineAudioContext(1, 1, rate).decodeAudioData(bytes);
  } catch {
    throw new Error("this browser cannot decode the file");
  }
}

/** Whether this browser makes audio contexts at `rate` (Chromium: 3000 to 768000 Hz). */
function decodesAt(rate) {
  try {
    return Boolean(new OfflineAudioContext(1, 1, rate));
  } catch {
    return false;
  }
}

/**
 * Decode an audio file at its own rate, so without resampling, where its header states it and this browser decodes
 * at it; at FALLBACK_RATE, resampled by the browser, otherwise. Resolves to {audio (an AudioBuffer), rateRead}.
 */
export async function decodeAtItsRate(blob) {
  const bytes = await blob.arrayBuffer();
  const stated = statedRate(new Uint8Array(bytes));
  const rateRead = Boolean(stated) && decodesAt(stated);
  return { audio: await decodeBytes(bytes, rateRead ? stated : FALLBACK_RATE), rateRead };
}

/** A 32-bit float WAV of equally long Float32Array channels. */
export function encodeWav(channels, rate) {
  const frames = channels[0].length;
  const count = channels.length;
  const dataBytes = frames * count * 4;
  const view = new DataView(new ArrayBuffer(58 + dataBytes));
  const text = (offset, value) => [...value].forEach((char, i) => view.setUint8(offset + i, char.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 50 + dataBytes, true);
  text(8, "WAVEfmt ");
  view.setUint32(16, 18, true); // fmt chunk: IEEE float, no extension
  view.setUint16(20, 3, true);
  view.setUint16(22, count, true);
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * count * 4, true);
  view.setUint16(32, count * 4, true);
  view.setUint16(34, 32, true);
  view.setUint16(36, 0, true);
  text(38, "fact");
  view.setUint32(42, 4, true);
  view.setUint32(46, frames, true);
  text(50, "data");
  view.setUint32(54, dataBytes, true);
  for (let i = 0; i < frames; i++) {
    for (let c = 0; c < count; c++) view.setFloat32(58 + 4 * (i * count + c), channels[c][i], true);
  }
  return new Blob([view.buffer], { type: "audio/wav" });
}

/**
 * Denoise `blob` in this page with `model` (an entry of /v1/models) at `strength`, each channel on its own;
 * `onProgress(fraction done)` as the worker goes, `threads` (WebAssembly threads) applies before the first model.
 * Resolves to {wav, sampleRate, rateRead, channels, seconds, threads, timings}: the result is a 32-bit float WAV at
 * the file's own rate (decodeAtItsRate: FALLBACK_RATE unless `rateRead`), full band; timings are seconds per stage
 * (decode, resample, stft, model, istft) and in total, model loading (load) apart.
 */
export async function denoiseInBrowser(blob, model, strength, { onProgress, threads } = {}) {
  const started = performance.now();
  const timings = {};
  const { audio, rateRead } = await timed(timings, "decode", () => decodeAtItsRate(blob));
  if (!audio.length) throw new Error("the file contains no audio samples");
  const channels = Array.from({ length: audio.numberOfChannels }, (_, c) => audio.getChannelData(c).slice());
  const job = {
    modelUrl: new URL(`v1/models/${encodeURIComponent(model.name)}/onnx`, document.baseURI).href,
    spectral: model.spectral,
    stream: model.stream,
    gainFloor: model.gain_floor,
    strength,
    channels,
    rate: audio.sampleRate,
    threads,
  };
  const result = await ask({ denoise: job }, channels.map((channel) => channel.buffer), onProgress);
  const wav = encodeWav(result.channels, audio.sampleRate);
  Object.assign(timings, result.timings);
  timings.total = (performance.now() - started) / 1000 - timings.load;
  return {
    wav,
    sampleRate: audio.sampleRate,
    rateRead,
    channels: channels.length,
    seconds: audio.duration,
    threads: result.threads,
    timings,
  };
}
