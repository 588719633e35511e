// Runs in the audio thread. "capture": hands each 128-sample block of the microphone to the page.
// "meter": posts the RMS of each 10 ms of what it hears (the page's measure of the avatar's voice), and with
// processorOptions.record the samples themselves.
class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage(channel.slice());
    return true;
  }
}
registerProcessor("capture", Capture);

class Meter extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.energy = 0;
    this.count = 0;
    this.block = Math.round(sampleRate / 100);
    this.samples = options.processorOptions && options.processorOptions.record ? new Float32Array(this.block) : null;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    const n = channel ? channel.length : 128;
    for (let i = 0; i < n; i++) {
      const s = channel ? channel[i] : 0;
      this.energy += s * s;
      if (this.samples) this.samples[this.count] = s;
      if (++this.count === this.block) {
        this.port.postMessage({ rms: Math.sqrt(this.energy / this.count), samples: this.samples && this.samples.slice() });
        this.energy = 0;
        this.count = 0;
      }
    }
    return true;
  }
}
registerProcessor("meter", Meter);
