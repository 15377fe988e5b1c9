// Webcam recorder: frames of the browser camera go to the kernel as JPEG buffers at a fixed fps.

function render({ model, el: root }) {
  root.classList.add("fomm-widget", "fomm-recorder");
  const camera = el("video");
  camera.muted = true;
  camera.playsInline = true;
  const preview = el("video");
  preview.controls = true;
  preview.loop = true;
  const recordBtn = el("button", "fomm-record", "\u25CF Record");
  const stopBtn = el("button", "fomm-stop", "\u25A0 Stop");
  stopBtn.disabled = true;
  const status = el("div", "fomm-status");
  const error = el("div", "fomm-error");
  const camPane = el("div", "fomm-pane");
  camPane.append(el("div", "fomm-caption", "Camera"), camera);
  camPane.style.display = "none";
  const prevPane = el("div", "fomm-pane");
  prevPane.append(el("div", "fomm-caption", "Recording"), preview);
  prevPane.style.display = "none";
  const soundBox = document.createElement("input");
  soundBox.type = "checkbox";
  soundBox.className = "fomm-sound-toggle";
  const soundLabel = el("label", "fomm-sound");
  soundLabel.append(soundBox, document.createTextNode("Record sound (microphone)"));
  const buttons = el("div", "fomm-row");
  buttons.append(recordBtn, stopBtn, soundLabel);
  const panes = el("div", "fomm-row");
  panes.append(camPane, prevPane);
  root.append(buttons, status, error, panes);

  const canvas = document.createElement("canvas");
  let stream = null;
  let timer = null;
  let t0 = 0;
  let busy = false;
  let pending = [];

  let audioRecorder = null;
  let audioChunks = [];
  const showSound = () => { soundBox.checked = model.get("sound"); };
  model.on("change:sound", showSound);
  showSound();
  soundBox.addEventListener("change", () => { model.set("sound", soundBox.checked); model.save_changes(); });

  const showStatus = () => { status.textContent = model.get("status"); };
  const showError = () => { error.textContent = model.get("error"); };
  model.on("change:status", showStatus);
  model.on("change:error", showError);
  showStatus();
  showError();

  function startSound() {
    audioRecorder = null;
    audioChunks = [];
    const tracks = stream.getAudioTracks();
    if (!tracks.length || typeof MediaRecorder === "undefined") return;
    const types = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];
    const mimeType = types.find((t) => MediaRecorder.isTypeSupported(t));
    try {
      audioRecorder = new MediaRecorder(new MediaStream(tracks), mimeType ? { mimeType } : undefined);
    } catch (err) {
      model.set("sound_note", "the browser cannot record sound (" + err.name + ")");
      model.save_changes();
      return;
    }
    audioRecorder.ondataavailable = (e) => { if (e.data && e.data.size) audioChunks.push(e.data); };
    audioRecorder.start();
  }

  // The recorded sound (an ArrayBuffer), or null without one.
  function stopSound() {
    const rec = audioRecorder;
    audioRecorder = null;
    if (!rec) return Promise.resolve(null);
    return new Promise((resolve) => {
      rec.onstop = () => new Blob(audioChunks, { type: rec.mimeType }).arrayBuffer().then(resolve, () => resolve(null));
      try { rec.stop(); } catch (err) { resolve(null); }
    });
  }

  async function start() {
    stream = await openCameraFor(model, recordBtn, model.get("sound"));
    if (!stream) return;
    if (!model.get("sound")) { model.set("sound_note", "sound off"); model.save_changes(); }
    camera.srcObject = stream;
    camPane.style.display = "";
    await camera.play();
    const fps = model.get("fps");
    model.send({ type: "start", fps });
    startSound();
    stopBtn.disabled = false;
    t0 = performance.now();
    timer = setInterval(tick, 1000 / fps);
  }

  function tick() {
    const fps = model.get("fps");
    const elapsed = (performance.now() - t0) / 1000;
    if (elapsed >= model.get("max_seconds")) {
      stop();
      return;
    }
    if (busy || camera.videoWidth === 0) return; // the kernel fills skipped slots by repeating frames
    busy = true;
    const index = Math.round(elapsed * fps);
    const job = grabJpeg(camera, canvas, model.get("width"), 0.92)
      .then((buf) => model.send({ type: "frame", index }, undefined, [buf]))
      .finally(() => { busy = false; });
    pending.push(job);
  }

  async function stop() {
    if (timer === null) return;
    clearInterval(timer);
    timer = null;
    stopBtn.disabled = true;
    const sound = await stopSound();
    await Promise.allSettled(pending);
    pending = [];
    if (sound && sound.byteLength) model.send({ type: "audio" }, undefined, [sound]);
    model.send({ type: "stop" });
    stopCamera(stream);
    stream = null;
    camera.srcObject = null;
    camPane.style.display = "none";
    recordBtn.disabled = false;
  }

  model.on("msg:custom", (msg, buffers) => {
    if (msg.type === "saved" && buffers && buffers.length) {
      if (preview.src) URL.revokeObjectURL(preview.src);
      preview.src = bytesUrl(buffers[0], "video/mp4");
      prevPane.style.display = "";
    }
  });

  recordBtn.addEventListener("click", start);
  stopBtn.addEventListener("click", stop);
  return () => { if (timer !== null) clearInterval(timer); stopSound(); stopCamera(stream); };
}

export default { render };
