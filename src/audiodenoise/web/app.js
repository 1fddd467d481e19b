// The audiodenoise page: denoise a file on the server (/v1/denoise) or in this browser (inbrowser.js),
// play both versions, draw their spectrograms.

import { checkRuntime, decode, denoiseInBrowser } from "./inbrowser.js";

const $ = (id) => document.getElementById(id);
const SPECTRUM_RATE = 22050; // decode at the model's rate: 0 to 11 kHz shown
const FFT_SIZE = 512;
const DYNAMIC_RANGE_DB = 90;
const COLORS = [[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]]; // magma-like

const state = { file: null, inputSpectrogram: null, inputUrl: null, resultUrl: null, models: new Map(), run: 0 };

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

async function loadModels() {
  try {
    const response = await fetch("v1/models");
    const listing = await response.json();
    for (const model of listing.models) {
      state.models.set(model.name, model);
      $("model").append(new Option(model.name, model.name, false, model.name === listing.default));
    }
    useModel();
  } catch (error) {
    showError(`Cannot reach the server (${error.message}).`);
  }
}

function selectedModel() {
  return state.models.get($("model").value);
}

function useModel() {
  const model = selectedModel();
  if (model) $("strength").value = model.strength;
  $("strength-value").textContent = Number($("strength").value).toFixed(2);
  if (!$("where-browser").disabled && model) {
    $("browser-note").textContent =
      "The file stays in this page; the result is a 32-bit float WAV at the file's own rate, full band " +
      `(the model runs at ${model.sample_rate} Hz).`;
  }
}

async function offerBrowserMode() {
  try {
    await checkRuntime();
    $("where-browser").disabled = false;
    useModel();
  } catch (error) {
    $("browser-note").textContent = `In-browser denoising is unavailable: ${error.message}.`;
  }
}

function forgetResult() {
  if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
  state.resultUrl = null;
  $("after").removeAttribute("src");
  $("download").hidden = true;
  clearCanvas($("after-spectrogram"));
}

async function pick(file) {
  if (!file) return;
  forgetResult();
  if (state.inputUrl) URL.revokeObjectURL(state.inputUrl);
  showError("");
  state.file = file;
  state.inputUrl = URL.createObjectURL(file);
  $("before-name").textContent = file.name;
  $("before").src = state.inputUrl;
  $("run").disabled = false;
  state.inputSpectrogram = await spectrogramOf(file);
  if (state.inputSpectrogram) draw($("before-spectrogram"), state.inputSpectrogram, state.inputSpectrogram.peak);
  await denoise();
}

/** `<stem>_denoised<suffix>`, the suffix being the input's unless given. */
function outputName(name, suffix) {
  const dot = name.lastIndexOf(".");
  const stem = dot > 0 ? name.slice(0, dot) : name;
  return `${stem}_denoised${suffix ?? (dot > 0 ? name.slice(dot) : "")}`;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body.error) return `${body.error} (HTTP ${response.status})`;
  } catch (ignored) {
    // not JSON: fall through to the status line
  }
  return `The server answered ${response.status} ${response.statusText}.`;
}

async function denoise() {
  if (!state.file) return;
  const run = ++state.run; // a later run (another file picked meanwhile) makes this one's outcome stale
  const current = () => run === state.run;
  const file = state.file;
  forgetResult();
  showError("");
  $("run").disabled = true;
  const here = $("where-browser").checked;
  const working = `Denoising ${file.name} ${here ? "in this browser" : "on the server"}…`;
  setStatus(working);
  try {
    const outcome = await (here ? denoiseHere(file, working, current) : denoiseOnServer(file));
    if (current()) await showResult(...outcome);
  } catch (error) {
    if (current()) {
      setStatus("");
      showError(error.message);
    }
  } finally {
    if (current()) $("run").disabled = false;
  }
}

/** On the server: resolves to [result blob, download name, status message]. */
async function denoiseOnServer(file) {
  const form = new FormData();
  form.append("file", file);
  const query = new URLSearchParams({ strength: $("strength").value, model: $("model").value });
  let response;
  try {
    response = await fetch(`v1/denoise?${query}`, { method: "POST", body: form });
  } catch (error) {
    throw new Error(`The request failed (${error.message}).`);
  }
  if (!response.ok) throw new Error(await errorMessage(response));
  const seconds = response.headers.get("X-Processing-Time");
  const factor = response.headers.get("X-Real-Time-Factor");
  const message = `Done in ${seconds} s (real-time factor ${factor}) with ${response.headers.get("X-Model")}.`;
  return [await response.blob(), outputName(file.name), message];
}

/** In this browser, as denoiseOnServer; the status line `working` gains the worker's progress while `current()`. */
async function denoiseHere(file, working, current) {
  const model = selectedModel();
  const onProgress = (fraction) => current() && setStatus(`${working} ${Math.floor(100 * fraction)} %`);
  let result;
  try {
    result = await denoiseInBrowser(file, model, Number($("strength").value), { onProgress });
  } catch (error) {
    const reason = String(error.message).split("\n")[0].replace(/\.$/, ""); // one line, one full stop
    throw new Error(`In-browser denoising failed: ${reason}.`);
  }
  const { total } = result.timings;
  const message =
    `Done in ${total.toFixed(3)} s in this browser (real-time factor ${(total / result.seconds).toFixed(4)}) ` +
    `with ${model.name}; the result is a 32-bit float WAV at ${result.sampleRate} Hz` +
    (result.rateRead ? "." : " (this file's own rate could not be read, so the browser decoded it at that rate).");
  return [result.wav, outputName(file.name, ".wav"), message];
}

async function showResult(result, name, message) {
  state.resultUrl = URL.createObjectURL(result);
  $("after").src = state.resultUrl;
  $("download").href = state.resultUrl;
  $("download").download = name;
  $("download").hidden = false;
  setStatus(message);
  const output = await spectrogramOf(result);
  if (output) draw($("after-spectrogram"), output, state.inputSpectrogram ? state.inputSpectrogram.peak : output.peak);
}

// --- spectrograms ------------------------------------------------------------------------------

async function spectrogramOf(blob) {
  let audio;
  try {
    audio = await decode(blob, SPECTRUM_RATE);
  } catch {
    return null; // a format this browser cannot decode: the players and the download still work
  }
  const samples = new Float32Array(audio.length);
  for (let c = 0; c < audio.numberOfChannels; c++) {
    const channel = audio.getChannelData(c);
    for (let i = 0; i < samples.length; i++) samples[i] += channel[i] / audio.numberOfChannels;
  }
  return powerSpectrogram(samples, $("before-spectrogram").width);
}

function powerSpectrogram(samples, columns) {
  const bins = FFT_SIZE / 2;
  const hop = Math.max(1, (samples.length - FFT_SIZE) / Math.max(1, columns - 1));
  const window = Float32Array.from({ length: FFT_SIZE }, (_, i) => 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / FFT_SIZE));
  const db = new Float32Array(columns * bins);
  const re = new Float32Array(FFT_SIZE);
  const im = new Float32Array(FFT_SIZE);
  let peak = -Infinity;
  for (let column = 0; column < columns; column++) {
    const start = Math.round(column * hop);
    for (let i = 0; i < FFT_SIZE; i++) {
      re[i] = (samples[start + i] || 0) * window[i];
      im[i] = 0;
    }
    fft(re, im);
    for (let bin = 0; bin < bins; bin++) {
      const value = 10 * Math.log10(re[bin] * re[bin] + im[bin] * im[bin] + 1e-12);
      db[column * bins + bin] = value;
      peak = Math.max(peak, value);
    }
  }
  return { db, columns, bins, peak };
}

function fft(re, im) {
  // In-place radix-2 FFT.
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let size = 2; size <= n; size <<= 1) {
    const angle = (-2 * Math.PI) / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0; k < size / 2; k++) {
        const wr = Math.cos(angle * k);
        const wi = Math.sin(angle * k);
        const a = start + k;
        const b = a + size / 2;
        const tr = re[b] * wr - im[b] * wi;
        const ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr;
        im[b] = im[a] - ti;
        re[a] += tr;
        im[a] += ti;
      }
    }
  }
}

function color(level) {
  const position = Math.min(1, Math.max(0, level)) * (COLORS.length - 1);
  const low = Math.floor(position);
  const high = Math.min(low + 1, COLORS.length - 1);
  const t = position - low;
  return COLORS[low].map((value, i) => value + (COLORS[high][i] - value) * t);
}

function draw(canvas, spectrogram, peakDb) {
  const { db, columns, bins } = spectrogram;
  canvas.width = columns;
  canvas.height = bins;
  const context = canvas.getContext("2d");
  const image = context.createImageData(columns, bins);
  for (let column = 0; column < columns; column++) {
    for (let bin = 0; bin < bins; bin++) {
      const [r, g, b] = color(1 + (db[column * bins + bin] - peakDb) / DYNAMIC_RANGE_DB);
      const offset = 4 * ((bins - 1 - bin) * columns + column);
      image.data.set([r, g, b, 255], offset);
    }
  }
  context.putImageData(image, 0, 0);
  canvas.dataset.drawn = "true";
}

function clearCanvas(canvas) {
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  delete canvas.dataset.drawn;
}

// --- wiring ------------------------------------------------------------------------------------

$("file").addEventListener("change", () => pick($("file").files[0]));
$("run").addEventListener("click", denoise);
$("model").addEventListener("change", useModel);
$("strength").addEventListener("input", () => {
  $("strength-value").textContent = Number($("strength").value).toFixed(2);
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  pick(event.dataTransfer.files[0]);
});
loadModels().then(offerBrowserMode);
