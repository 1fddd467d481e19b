// Denoising in this browser: ONNX Runtime Web (vendored by `make web`, served by this server) runs the server's
// own model on the patch features; dsp.js does everything around it. The file never leaves the page.

import { denoiseSignal, setup, timed } from "./dsp.js";

const RUNTIME = "./vendor/ort.wasm.bundle.min.mjs";
const BATCH = 16; // patches per model call, as the server's Denoiser
const sessions = new Map(); // model name -> promise of its InferenceSession
let runtime = null;

/** ONNX Runtime Web; rejects with a one-line reason when this page cannot run it. */
export function loadRuntime() {
  runtime ??= (async () => {
    if (typeof WebAssembly !== "object") throw new Error("this browser has no WebAssembly");
    try {
      return await import(RUNTIME);
    } catch {
      throw new Error("ONNX Runtime Web was not built into this installation (run make web)");
    }
  })();
  return runtime;
}

/** Decode an audio file to an AudioBuffer at `rate`, resampled by the browser when the file's rate differs. */
export async function decode(blob, rate) {
  try {
    return await new OfflineAudioContext(1, 1, rate).decodeAudioData(await blob.arrayBuffer());
  } catch {
    throw new Error("this browser cannot decode the file");
  }
}

/** The model's inference session, created once per model from GET /v1/models/{name}/onnx. */
function session(ort, name) {
  if (!sessions.has(name)) {
    const created = (async () => {
      const response = await fetch(`v1/models/${encodeURIComponent(name)}/onnx`);
      if (!response.ok) throw new Error(`the server did not send the model (HTTP ${response.status})`);
      const bytes = new Uint8Array(await response.arrayBuffer());
      return ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    })();
    created.catch(() => sessions.delete(name)); // a failure is not cached: the next attempt tries again
    sessions.set(name, created);
  }
  return sessions.get(name);
}

/** Gains of `count` patches ([patch][bin][frame]) from the model, BATCH patches per call. */
async function patchGains(ort, model, patches, count, s) {
  const size = s.bins * s.patch_frames;
  const gains = new Float32Array(count * size);
  for (let first = 0; first < count; first += BATCH) {
    const n = Math.min(BATCH, count - first);
    const batch = patches.subarray(first * size, (first + n) * size);
    const input = new ort.Tensor("float32", batch, [n, 1, s.bins, s.patch_frames]);
    const output = await model.run({ [model.inputNames[0]]: input });
    gains.set(output[model.outputNames[0]].data, first * size);
  }
  return gains;
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
 * Denoise `blob` in this page with `model` (an entry of /v1/models) at `strength`, each channel on its own.
 * Resolves to {wav, sampleRate, channels, seconds, threads, timings}: the result is a 32-bit float WAV at the
 * model's rate; timings are seconds per stage (decode, stft, model, istft) and in total, model loading apart.
 */
export async function denoiseInBrowser(blob, model, strength) {
  const ort = await loadRuntime();
  const s = setup(model.spectral);
  const net = await session(ort, model.name);
  const timings = {};
  const started = performance.now();
  const audio = await timed(timings, "decode", () => decode(blob, s.sample_rate));
  if (!audio.length) throw new Error("the file contains no audio samples");
  const options = { strength, gainFloor: model.gain_floor, timings };
  options.runModel = (patches, count) => patchGains(ort, net, patches, count, s);
  const channels = [];
  for (let c = 0; c < audio.numberOfChannels; c++) channels.push(await denoiseSignal(audio.getChannelData(c), s, options));
  const wav = encodeWav(channels, s.sample_rate);
  timings.total = (performance.now() - started) / 1000;
  return {
    wav,
    sampleRate: s.sample_rate,
    channels: channels.length,
    seconds: audio.duration,
    threads: ort.env.wasm.numThreads,
    timings,
  };
}
