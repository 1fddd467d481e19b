// The in-browser pipeline, off the page's main thread: ONNX Runtime Web (vendored by `make web`) runs the
// server's own model, a magnitude network on patch features or a spectrum network on blocks of STFT frames with
// its recurrent state carried over; dsp.js does everything around it, resampling included. inbrowser.js talks to it:
// requests {id, check} or {id, denoise}; answers {id, progress} (0 to 1), then {id, result} or {id, error}.

import { denoiseAtRate, denoiseFrames, denoiseSignal, setup, timed } from "./dsp.js";

const RUNTIME = "./vendor/ort.wasm.bundle.min.mjs";
const BATCH_VALUES = 16 * 128 * 128; // features per model call: 16 patches of the reference settings
const sessions = new Map(); // model URL -> promise of its InferenceSession
let runtime = null;
let queue = Promise.resolve(); // one request at a time: a session runs one batch at a time

/** ONNX Runtime Web; rejects with a one-line reason when this browser cannot run it. */
function loadRuntime() {
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

/** The model's inference session, created once per model from its ONNX export at `url`. */
function session(ort, url) {
  if (!sessions.has(url)) {
    const created = (async () => {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`the server did not send the model (HTTP ${response.status})`);
      const bytes = new Uint8Array(await response.arrayBuffer());
      return ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    })();
    created.catch(() => sessions.delete(url)); // a failure is not cached: the next attempt tries again
    sessions.set(url, created);
  }
  return sessions.get(url);
}

/** Gains of `count` patches ([patch][bin][frame]), BATCH_VALUES features per call; `onBatch(fraction done)`. */
async function patchGains(ort, model, patches, count, s, onBatch) {
  const size = s.bins * s.patch_frames;
  const perCall = Math.max(1, Math.floor(BATCH_VALUES / size));
  const gains = new Float32Array(count * size);
  for (let first = 0; first < count; first += perCall) {
    const n = Math.min(perCall, count - first);
    const batch = patches.subarray(first * size, (first + n) * size);
    const input = new ort.Tensor("float32", batch, [n, 1, s.bins, s.patch_frames]);
    const output = await model.run({ [model.inputNames[0]]: input });
    gains.set(output[model.outputNames[0]].data, first * size);
    onBatch((first + n) / count);
  }
  return gains;
}

/**
 * A spectrum network's runFrames for one channel (dsp.denoiseFrames): its state starts at zeros and each call's
 * next_state_i is the next call's state_i.
 */
function frameMasks(ort, model, s, stream) {
  let state = stream.state_shapes.map(
    (shape) => new ort.Tensor("float32", new Float32Array(shape.reduce((size, length) => size * length, 1)), shape),
  );
  return async (parts, count) => {
    const feeds = Object.fromEntries(state.map((tensor, i) => [`state_${i}`, tensor]));
    const output = await model.run({ ...feeds, spectrum: new ort.Tensor("float32", parts, [1, 2, s.bins, count]) });
    state = state.map((_, i) => output[`next_state_${i}`]);
    return output.mask.data;
  };
}

/**
 * Denoise `channels` (Float32Arrays at the file's `rate`) each on its own, at the model's rate by patches or, for
 * a spectrum network (`stream`: /v1/models' look-ahead and state shapes), frame by frame, and back to `rate`, full
 * band (dsp.denoiseAtRate); `threads`, when given, is set before the first session.
 * Resolves to {channels, threads, timings}: seconds per stage, model loading as `load`.
 */
async function denoise({ modelUrl, spectral, stream, gainFloor, strength, channels, rate, threads }, progress) {
  const ort = await loadRuntime();
  if (threads) ort.env.wasm.numThreads = threads;
  const s = setup(spectral);
  const timings = {};
  const net = await timed(timings, "load", () => session(ort, modelUrl));
  const out = [];
  for (const [c, signal] of channels.entries()) {
    const onProgress = (done) => progress((c + done) / channels.length);
    const options = { strength, gainFloor, onProgress, timings };
    const atModelRate = (samples) => {
      if (!stream) {
        const runModel = (patches, count, onBatch) => patchGains(ort, net, patches, count, s, onBatch);
        return denoiseSignal(samples, s, { ...options, runModel });
      }
      const runFrames = frameMasks(ort, net, s, stream);
      return denoiseFrames(samples, s, { ...options, lookahead: stream.lookahead_frames, runFrames });
    };
    out.push(await denoiseAtRate(signal, rate, s.sample_rate, atModelRate, timings));
  }
  return { channels: out, threads: ort.env.wasm.numThreads, timings };
}

/** A request's result: {} once the runtime loads for `check`, the denoised channels for `denoise`. */
async function handle({ check, denoise: job }, progress) {
  if (!check) return denoise(job, progress);
  await loadRuntime();
  return {};
}

self.onmessage = ({ data }) => {
  const { id } = data;
  queue = queue.then(async () => {
    try {
      const result = await handle(data, (progress) => postMessage({ id, progress }));
      postMessage({ id, result }, (result.channels ?? []).map((channel) => channel.buffer));
    } catch (error) {
      postMessage({ id, error: String(error.message ?? error) });
    }
  });
};
