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
  const buttons = el("div", "fomm-row");
  buttons.append(recordBtn, stopBtn);
  const panes = el("div", "fomm-row");
  panes.append(camPane, prevPane);
  root.append(buttons, status, error, panes);

  const canvas = document.createElement("canvas");
  let stream = null;
  let timer = null;
  let t0 = 0;
  let busy = false;
  let pending = [];

  const showStatus = () => { status.textContent = model.get("status"); };
  const showError = () => { error.textContent = model.get("error"); };
  model.on("change:status", showStatus);
  model.on("change:error", showError);
  showStatus();
  showError();

  async function start() {
    stream = await openCameraFor(model, recordBtn);
    if (!stream) return;
    camera.srcObject = stream;
    camPane.style.display = "";
    await camera.play();
    const fps = model.get("fps");
    model.send({ type: "start", fps });
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
    await Promise.allSettled(pending);
    pending = [];
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
  return () => { if (timer !== null) clearInterval(timer); stopCamera(stream); };
}

export default { render };
