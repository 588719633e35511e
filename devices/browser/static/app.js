// The Live Avatar page: microphone and camera up, avatar video and voice down, in sync.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
let JITTER_S = 0.12;        // playback starts this far behind the first frame of a burst (the server's config says)
const MAX_AHEAD_S = 0.6;    // deeper than this, the buffer is dropped back to JITTER_S
const MIC_CHUNK = 320;      // 20 ms at 16 kHz per message
const CAMERA_EVERY_MS = 1000;

// Everything a test (or a curious user) may want to read back.
const stats = (window.__liveavatar = {
  state: "connecting", config: null, framesReceived: 0, framesDrawn: 0, flushes: 0, resyncs: 0,
  micSamplesSent: 0, micRms: 0, cameraSent: 0, generations: {}, log: [], events: [], errors: [],
});

let config = { fps: 25, audio_rate: 24000, size: [512, 512] };
let ws = null, playCtx = null, micCtx = null;
let base = null;            // frame `base.index` plays at playCtx time `base.time`
let scheduled = [];         // audio sources not yet finished
let images = [];            // decoded frames waiting for their time
const canvas = document.getElementById("avatar");
const draw2d = canvas.getContext("2d");

function setState(state) {
  stats.state = state;
  const el = document.getElementById("state");
  el.dataset.state = state;
  el.textContent = { idle: "listening", listening: "listening", user_speaking: "hearing you", thinking: "thinking…",
    speaking: "speaking", paused: "listening (paused)", disconnected: "disconnected" }[state] || state;
}

function showError(message) {
  stats.errors.push(message);
  document.getElementById("error").textContent = message;
}

function connect() {
  const q = token ? "?token=" + encodeURIComponent(token) : "";
  ws = new WebSocket(`ws://${location.host}/ws${q}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => ws.send(JSON.stringify({ type: "hello", sample_rate: 16000 }));
  ws.onmessage = (m) => (typeof m.data === "string" ? onEvent(JSON.parse(m.data)) : onFrame(m.data));
  ws.onclose = () => setState("disconnected");
}

// ---------------------------------------------------------------- avatar frames (video + its audio)

function onFrame(buffer) {
  const view = new DataView(buffer);
  const index = view.getUint32(1, true), jpegBytes = view.getUint32(5, true);
  const generation = view.getInt32(9, true), rate = view.getUint16(13, true) * 10;
  const pcm = new Int16Array(buffer.slice(17 + jpegBytes));
  let energy = 0;
  for (let i = 0; i < pcm.length; i++) energy += pcm[i] * pcm[i];
  const voiced = energy > 0;
  stats.framesReceived++;
  stats.log.push({ i: index, g: generation, voiced, t: performance.now() });
  if (stats.log.length > 5000) stats.log.splice(0, 1000);
  if (generation >= 0) {
    const g = (stats.generations[generation] ||= { frames: 0, voiced: 0 });
    g.frames++;
    if (voiced) g.voiced++;
  }
  const at = schedule(index, pcm, rate);
  createImageBitmap(new Blob([new Uint8Array(buffer, 17, jpegBytes)], { type: "image/jpeg" }))
    .then((bitmap) => images.push({ index, at, bitmap }));
}

function schedule(index, pcm, rate) {
  if (!playCtx) return 0;
  const now = playCtx.currentTime;
  let at = base ? base.time + (index - base.index) / config.fps : -1;
  if (at < now + 0.01 || at > now + MAX_AHEAD_S) {   // first frame, late frames, or a runaway buffer
    base = { time: now + JITTER_S, index };
    at = base.time;
    stats.resyncs++;
  }
  const buffer = playCtx.createBuffer(1, Math.max(pcm.length, 1), rate);
  const samples = buffer.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
  const source = playCtx.createBufferSource();
  source.buffer = buffer;
  source.connect(playCtx.destination);
  source.start(at);
  const entry = { source, index };
  scheduled.push(entry);
  source.onended = () => { scheduled = scheduled.filter((e) => e !== entry); };
  return at;
}

function render() {
  if (playCtx && images.length) {
    // A frame shows when its audio is heard: the context's clock runs ahead of the speaker by its output latency.
    const now = playCtx.currentTime - (playCtx.outputLatency || playCtx.baseLatency || 0);
    images.sort((a, b) => a.index - b.index);
    let show = null;
    while (images.length && images[0].at <= now) {
      if (show) show.bitmap.close();
      show = images.shift();
    }
    if (show) {
      if (canvas.width !== show.bitmap.width) { canvas.width = show.bitmap.width; canvas.height = show.bitmap.height; }
      draw2d.drawImage(show.bitmap, 0, 0);
      show.bitmap.close();
      stats.framesDrawn++;
    }
  }
  requestAnimationFrame(render);
}

function flush() {
  for (const { source } of scheduled) { try { source.stop(); } catch (e) { /* already ended */ } }
  scheduled = [];
  for (const image of images) image.bitmap.close();
  images = [];
  base = null;
  stats.flushes++;
  stats.log.push({ flush: true, t: performance.now() });
}

// ---------------------------------------------------------------- events: state, transcript, latency

const lines = {};
function onEvent(event) {
  stats.events.push(event);
  if (stats.events.length > 2000) stats.events.splice(0, 500);
  switch (event.type) {
    case "config":
      config = Object.assign(config, event);
      stats.config = config;
      if (config.jitter_s) JITTER_S = config.jitter_s;
      canvas.width = config.size[0]; canvas.height = config.size[1];
      setState("listening");
      break;
    case "flush": flush(); break;
    case "state": setState(event.state); break;
    case "transcript": addText(event); break;
    case "interrupted":
      if (lines[event.generation]) { lines[event.generation].textContent = event.heard + " …"; lines[event.generation].classList.add("interrupted"); }
      break;
    case "metrics":
      if (event.response_latency_s != null) document.getElementById("latency").textContent = event.response_latency_s.toFixed(2) + " s";
      if (event.barge_in_latency_s != null) document.getElementById("bargein").textContent = event.barge_in_latency_s.toFixed(2) + " s";
      break;
    case "error": showError(event.message); break;
  }
}

function addText(event) {
  const box = document.getElementById("transcript");
  const key = event.role === "agent" ? event.generation : "u" + event.generation;
  let line = lines[key];
  if (!line) {
    line = lines[key] = document.createElement("p");
    line.className = event.role;
    box.appendChild(line);
  }
  line.textContent = event.delta ? line.textContent + event.text : event.text;
  box.scrollTop = box.scrollHeight;
}

// ---------------------------------------------------------------- microphone and camera

async function start() {
  document.getElementById("start").disabled = true;
  const aec = params.get("aec") !== "0";  // echo cancellation stops the avatar hearing itself
  const audio = { echoCancellation: aec, noiseSuppression: aec, autoGainControl: aec, channelCount: 1 };
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio, video: { width: 640, height: 480 } });
  } catch (e) {
    try { stream = await navigator.mediaDevices.getUserMedia({ audio }); }
    catch (e2) { showError("no microphone: " + e2.message); return; }
  }
  playCtx = new AudioContext({ sampleRate: config.audio_rate, latencyHint: "interactive" });
  micCtx = new AudioContext({ sampleRate: 16000 });
  await micCtx.audioWorklet.addModule("capture-worklet.js");
  const node = new AudioWorkletNode(micCtx, "capture");
  const silence = micCtx.createGain();
  silence.gain.value = 0;  // keeps the graph running without playing the mic back
  micCtx.createMediaStreamSource(stream).connect(node);
  node.connect(silence).connect(micCtx.destination);
  let pending = new Int16Array(0);
  node.port.onmessage = (e) => {
    const block = e.data;
    let energy = 0;
    const merged = new Int16Array(pending.length + block.length);
    merged.set(pending);
    for (let i = 0; i < block.length; i++) {
      const s = Math.max(-1, Math.min(1, block[i]));
      energy += s * s;
      merged[pending.length + i] = s * 32767;
    }
    stats.micRms = Math.sqrt(energy / block.length);
    document.querySelector("#level i").style.width = Math.min(100, stats.micRms * 400) + "%";
    pending = merged;
    while (pending.length >= MIC_CHUNK) {
      send(0x01, pending.slice(0, MIC_CHUNK).buffer);
      stats.micSamplesSent += MIC_CHUNK;
      pending = pending.slice(MIC_CHUNK);
    }
  };
  const video = stream.getVideoTracks().length ? document.getElementById("camera") : null;
  if (video) { video.srcObject = stream; setInterval(() => sendCamera(video), CAMERA_EVERY_MS); }
}

function send(kind, payload) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const message = new Uint8Array(1 + payload.byteLength);
  message[0] = kind;
  message.set(new Uint8Array(payload), 1);
  ws.send(message);
}

function sendCamera(video) {
  if (!video.videoWidth || !ws || ws.bufferedAmount > 256 * 1024) return;
  const grab = document.createElement("canvas");
  grab.width = video.videoWidth; grab.height = video.videoHeight;
  grab.getContext("2d").drawImage(video, 0, 0);
  grab.toBlob((blob) => blob && blob.arrayBuffer().then((b) => { send(0x02, b); stats.cameraSent++; }), "image/jpeg", 0.7);
}

setInterval(() => {  // tell the server what is playing (for its playback-position bookkeeping)
  if (ws && ws.readyState === WebSocket.OPEN && playCtx) ws.send(JSON.stringify({ type: "played", scheduled: scheduled.length, time: playCtx.currentTime }));
}, 500);

document.getElementById("start").onclick = start;
connect();
requestAnimationFrame(render);
if (params.get("autostart") === "1") start();
