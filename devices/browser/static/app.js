// The Live Avatar page: microphone and camera up, avatar video and voice down, in sync.
// Media goes over WebRTC (the server's default) or, as a fallback, over the same websocket as the events.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
let JITTER_S = 0.12;        // websocket media: playback starts this far behind the first frame of a burst (the server's config says)
const MAX_AHEAD_S = 0.6;    // deeper than this, the buffer is dropped back to JITTER_S
const MIC_CHUNK = 320;      // 20 ms at 16 kHz per message
const CAMERA_EVERY_MS = 1000;
const STATS_EVERY_MS = 500;
const MUTE_MARGIN_S = 0.02; // WebRTC flush without a time stamp: silence the voice this much longer than the playout delay
const DRAIN_MARGIN_MS = 100; // WebRTC flush: the decoder's tail of the old audio still plays this long after the flush's packet
const MAX_MUTE_MS = 3000;   // WebRTC flush: never stay muted longer than this (a stalled stream)

// Everything a test (or a curious user) may want to read back.
const stats = (window.__liveavatar = {
  state: "connecting", config: null, transport: null, framesReceived: 0, framesDrawn: 0, flushes: 0, resyncs: 0,
  micSamplesSent: 0, micRms: 0, camera: null, cameraSent: 0, generations: {}, log: [], events: [], errors: [],
  wsBytes: 0, rtpBytes: 0, framesDecoded: 0, playoutS: null, rtcState: "new", heard: [], presented: [],
});

let config = { fps: 25, audio_rate: 24000, size: [512, 512] };
let configured;             // resolves when the server's config has arrived
const gotConfig = new Promise((resolve) => (configured = resolve));
let ws = null, playCtx = null, micCtx = null, pc = null;
let base = null;            // websocket media: frame `base.index` plays at playCtx time `base.time`
let scheduled = [];         // websocket media: audio sources not yet finished
let images = [];            // websocket media: decoded frames waiting for their time
let muteTurn = 0;           // WebRTC media: counts flushes (each one mutes the voice until its audio has drained)
let meter = null;           // WebRTC media: measures the voice as it arrives (only when `metered`)
let persona = null;         // the persona this page talks to (null: the server's first or only one)
const probe = params.get("probe") === "1";  // benchmarks: read the frame index stamped into each frame's corner
const record = params.get("record") === "1";  // tests: keep the voice as heard (window.__liveavatarRecording())
const metered = record || params.get("meter") === "1";  // tests: measure the WebRTC voice as it arrives (stats.heard)
const recording = [];
const canvas = document.getElementById("avatar");
const draw2d = canvas.getContext("2d", { willReadFrequently: probe });
const avatarVideo = document.getElementById("avatar-video");
const voice = document.getElementById("voice");

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
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws${q}`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (m) => {
    stats.wsBytes += typeof m.data === "string" ? m.data.length : m.data.byteLength;
    typeof m.data === "string" ? onEvent(JSON.parse(m.data)) : onFrame(m.data);
  };
  ws.onclose = () => { setState("disconnected"); if (pc) pc.close(); };
}

function hello(name) {
  persona = name || null;
  ws.send(JSON.stringify({ type: "hello", sample_rate: 16000, persona }));
}

function wantsCamera() {
  // Only an agent that looks at the person gets the camera (a server that does not say gets it always).
  if (!Array.isArray(config.camera)) return true;
  return config.camera.includes(persona || (config.personas || [])[0] || config.name);
}

// ---------------------------------------------------------------- websocket media: frames with their audio

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
  if (pc) return;  // WebRTC media: the <video> element shows the frames; this loop is for the websocket's
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
      if (probe) notePresented(readStamp(draw2d), performance.timeOrigin + performance.now());
    }
  }
  requestAnimationFrame(render);
}

function flush(event) {
  if (pc) muteUntilPlayed(event.until_rtp);
  else {
    for (const { source } of scheduled) { try { source.stop(); } catch (e) { /* already ended */ } }
    scheduled = [];
    for (const image of images) image.bitmap.close();
    images = [];
    base = null;
    stats.log.push({ flush: true, t: performance.now() });
  }
  stats.flushes++;
}

function muteUntilPlayed(untilRtp) {
  // The browser's jitter buffer cannot be emptied from a page: silence the voice until the first packet sent after
  // the flush plays out (or, without its time stamp, for the measured playout delay).
  const started = performance.now(), turn = ++muteTurn;
  const limitMs = untilRtp == null ? ((stats.playoutS ?? 0.08) + MUTE_MARGIN_S) * 1000 : MAX_MUTE_MS;
  voice.muted = true;
  stats.log.push({ flush: true, t: started, until_rtp: untilRtp });
  const check = () => {
    if (turn !== muteTurn) return;  // a later flush took over
    const receiver = pc.getReceivers().find((r) => r.track && r.track.kind === "audio");
    const playing = receiver && receiver.getSynchronizationSources()[0];
    const reached = untilRtp != null && playing && ((playing.rtpTimestamp - untilRtp) >>> 0) < 0x80000000;
    if (reached) {
      // The receiver reports a packet as it leaves the jitter buffer; the decoder's tail of the old audio (and
      // its concealment fade) still plays for a few tens of ms: stay muted that much longer.
      setTimeout(() => { if (turn === muteTurn) unmute(true); }, DRAIN_MARGIN_MS);
    } else if (performance.now() - started >= limitMs) unmute(false);
    else setTimeout(check, 5);
  };
  const unmute = (reached) => {
    voice.muted = false;
    stats.log.push({ unmute: true, t: performance.now(), reached });
  };
  check();
}

// ---------------------------------------------------------------- WebRTC media

async function startWebRTC(stream) {
  pc = new RTCPeerConnection({ iceServers: config.ice_servers || [] });
  const mic = stream.getAudioTracks()[0], camera = stream.getVideoTracks()[0];
  pc.addTransceiver(mic, { direction: "sendrecv", streams: [stream] });
  if (camera) pc.addTransceiver(camera, { direction: "sendrecv", streams: [stream], sendEncodings: [{ maxFramerate: 5, maxBitrate: 300000 }] });
  else pc.addTransceiver("video", { direction: "recvonly" });
  const remote = new MediaStream();
  pc.ontrack = (e) => {
    remote.addTrack(e.track);
    if (e.track.kind === "audio") { voice.srcObject = remote; voice.play().catch(() => {}); if (metered) listenTo(remote); }
    else { avatarVideo.srcObject = remote; avatarVideo.play().catch(() => {}); watchFrames(e.track); }
  };
  pc.onconnectionstatechange = () => {
    stats.rtcState = pc.connectionState;
    if (pc.connectionState === "failed") showError("the media connection failed (behind NAT? the server needs --ice-server)");
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {  // the server takes one offer with every candidate in it (no trickling)
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 3000);
  });
  ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
  canvas.hidden = true;
  avatarVideo.hidden = false;
}

async function listenTo(stream) {
  // A meter on the voice as it reaches the page, every 10 ms: [time, level received, level heard (0 while muted)].
  // It sits a few milliseconds behind the <audio> element, which plays the voice (there the browser's echo
  // canceller hears it too: voice played through Web Audio would not be cancelled).
  if (playCtx) return;
  playCtx = new AudioContext({ latencyHint: "interactive" });
  await playCtx.audioWorklet.addModule("capture-worklet.js");
  meter = new AudioWorkletNode(playCtx, "meter", { processorOptions: { record } });
  const silence = playCtx.createGain();
  silence.gain.value = 0;  // keeps the graph running; the <audio> element is what plays
  playCtx.createMediaStreamSource(stream).connect(meter).connect(silence).connect(playCtx.destination);
  meter.port.onmessage = (e) => {
    const { rms, samples } = e.data;
    stats.heard.push([performance.now(), rms, voice.muted ? 0 : rms]);
    if (stats.heard.length > 15000) stats.heard.splice(0, 3000);
    if (samples) recording.push(voice.muted ? new Float32Array(samples.length) : samples);
  };
}

function watchFrames(track) {
  // Count the frames the page presents. Benchmarks read each frame's stamp as it leaves the decoder: headless
  // Chromium's software compositor presents only some of the frames it decoded, however idle the machine.
  const onFrame = () => { stats.framesDrawn++; avatarVideo.requestVideoFrameCallback(onFrame); };
  avatarVideo.requestVideoFrameCallback(onFrame);
  if (probe) readDecodedStamps(track).catch((e) => stats.errors.push(`probe: ${e}`));
}

async function readDecodedStamps(track) {
  // Each decoded frame's index (stamped by liveavatar.testing.serve_bench), read with when it arrived, in a worker of
  // its own: on this page's thread a stats poll or a garbage collection would delay the reading, not the frame.
  const { readable } = new MediaStreamTrackProcessor({ track });
  const worker = new Worker(URL.createObjectURL(new Blob([`(${stampReader})()`], { type: "text/javascript" })));
  worker.onmessage = (e) => (typeof e.data === "string" ? stats.errors.push(`probe: ${e.data}`) : notePresented(...e.data));
  worker.postMessage(readable, [readable]);
}

function stampReader() {
  // Runs in the probe's worker: posts [index, wall-clock ms] for each frame out of the decoder.
  onmessage = async (e) => {
    const reader = e.data.getReader();
    const rect = { x: 0, y: 0, width: 256, height: 16 };
    try {
      for (;;) {
        const { value: frame, done } = await reader.read();
        if (done) return;
        const at = performance.timeOrigin + performance.now();
        try {
          const corner = new Uint8Array(frame.allocationSize({ rect }));
          const [luma] = await frame.copyTo(corner, { rect });
          const row = luma.offset + 8 * luma.stride;
          let index = 0;
          for (let bit = 0; bit < 16; bit++) if (corner[row + bit * 16 + 8] > 128) index |= 1 << bit;
          postMessage([index, at]);
        } finally {
          frame.close();
        }
      }
    } catch (error) {
      postMessage(String(error));
    }
  };
}

async function readRtcStats() {
  let bytes = 0, decoded = 0, jitterDelay = 0, emitted = 0, rtt = 0;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp") {
      bytes += (r.bytesReceived || 0) + (r.headerBytesReceived || 0);
      if (r.kind === "video") {
        decoded = r.framesDecoded || 0;
        stats.video = { received: r.framesReceived, decoded: r.framesDecoded, dropped: r.framesDropped, lost: r.packetsLost,
          freezes: r.freezeCount, nacks: r.nackCount, plis: r.pliCount, jitterBuffer: r.jitterBufferDelay / (r.jitterBufferEmittedCount || 1) };
      }
      if (r.kind === "audio") {
        jitterDelay = r.jitterBufferDelay || 0; emitted = r.jitterBufferEmittedCount || 0;
        stats.audio = { jitterBuffer: jitterDelay / (emitted || 1), target: (r.jitterBufferTargetDelay || 0) / (emitted || 1),
          concealed: r.concealedSamples, received: r.totalSamplesReceived, lost: r.packetsLost };
      }
    }
    if (r.type === "candidate-pair" && r.nominated && r.currentRoundTripTime != null) rtt = r.currentRoundTripTime;
  });
  const last = readRtcStats.last || { jitterDelay: 0, emitted: 0 };
  if (emitted > last.emitted) stats.playoutS = (jitterDelay - last.jitterDelay) / (emitted - last.emitted) + rtt / 2;
  readRtcStats.last = { jitterDelay, emitted };
  stats.rtpBytes = bytes;
  stats.framesDecoded = decoded;
}

window.__liveavatarReadRtcStats = () => (pc ? readRtcStats() : Promise.resolve());  // tests: the counters as of now

window.__liveavatarRecording = () => {
  // The voice as heard (muted parts silent), 16-bit little-endian PCM in base64, and its sample rate.
  const pcm = new Int16Array(recording.reduce((n, block) => n + block.length, 0));
  let at = 0;
  for (const block of recording) for (let i = 0; i < block.length; i++) pcm[at++] = Math.max(-1, Math.min(1, block[i])) * 32767;
  let text = "";
  const bytes = new Uint8Array(pcm.buffer);
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return { rate: playCtx ? playCtx.sampleRate : 0, pcm: btoa(text) };
};

// ---------------------------------------------------------------- benchmarks: which frame was presented when

function readStamp(ctx) {
  // 16 cells of 16×16 pixels across the top-left corner, white for 1 (see liveavatar.testing.serve_bench)
  const row = ctx.getImageData(0, 8, 256, 1).data;
  let index = 0;
  for (let bit = 0; bit < 16; bit++) if (row[(bit * 16 + 8) * 4 + 1] > 128) index |= 1 << bit;
  return index;
}

function notePresented(index, wallMs) {
  stats.presented.push([index, wallMs]);
  if (stats.presented.length > 20000) stats.presented.splice(0, 5000);
}

// ---------------------------------------------------------------- events: state, transcript, latency

const lines = {};
function onEvent(event) {
  stats.events.push(Object.assign({ at: performance.now() }, event));
  if (stats.events.length > 2000) stats.events.splice(0, 500);
  switch (event.type) {
    case "config":
      config = Object.assign(config, event);
      stats.config = config;
      stats.transport = config.transport || "websocket";
      if (config.jitter_s) JITTER_S = config.jitter_s;
      canvas.width = config.size[0]; canvas.height = config.size[1];
      setState("listening");
      choosePersona();
      configured();
      break;
    case "answer": pc.setRemoteDescription({ type: "answer", sdp: event.sdp }).catch((e) => showError("WebRTC: " + e.message)); break;
    case "flush": flush(event); break;
    case "state": setState(event.state); break;
    case "transcript": addText(event); break;
    case "interrupted":
      if (lines[event.generation]) { lines[event.generation].textContent = event.heard + " …"; lines[event.generation].classList.add("interrupted"); }
      break;
    case "metrics":
      if (event.response_latency_s != null) document.getElementById("latency").textContent = event.response_latency_s.toFixed(2) + " s";
      if (event.barge_in_latency_s != null) document.getElementById("bargein").textContent = event.barge_in_latency_s.toFixed(2) + " s";
      break;
    case "error":
      showError(event.message);
      if (event.code === "busy") document.getElementById("start").disabled = true;
      break;
  }
}

function choosePersona() {
  // A server with several personas lets the person pick one (or the page's ?persona=NAME does).
  const names = config.personas || [];
  const picker = document.getElementById("persona");
  if (names.length > 1 && !params.get("persona")) {
    picker.replaceChildren(...names.map((n) => Object.assign(document.createElement("option"), { value: n, textContent: n })));
    picker.hidden = false;
  } else {
    hello(params.get("persona") || names[0]);
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
  await gotConfig;
  const picker = document.getElementById("persona");
  if (!picker.hidden) { hello(picker.value); picker.disabled = true; }
  const aec = params.get("aec") !== "0";  // echo cancellation stops the avatar hearing itself
  const audio = { echoCancellation: aec, noiseSuppression: aec, autoGainControl: aec, channelCount: 1 };
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio, video: wantsCamera() && { width: 640, height: 480 } });
  } catch (e) {
    try { stream = await navigator.mediaDevices.getUserMedia({ audio }); }
    catch (e2) { showError("no microphone: " + e2.message); return; }
  }
  stats.camera = stream.getVideoTracks().length > 0;
  if (stats.transport === "webrtc") {
    document.getElementById("camera").srcObject = stats.camera ? stream : null;
    await startWebRTC(stream);
    return;
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

setInterval(async () => {  // tell the server what is playing (for its playback-position bookkeeping)
  if (!ws || ws.readyState !== WebSocket.OPEN || !(playCtx || pc)) return;
  if (pc) await readRtcStats().catch(() => {});
  ws.send(JSON.stringify({ type: "played", scheduled: scheduled.length, time: playCtx ? playCtx.currentTime : null, playout_s: stats.playoutS }));
}, STATS_EVERY_MS);

document.getElementById("start").onclick = start;
connect();
requestAnimationFrame(render);
if (params.get("autostart") === "1") start();
