// Live animator: camera frame -> kernel (face crop + Animator.step) -> animated JPEG back.
// One frame in flight at a time: the next is grabbed only when the previous result came back,
// so a slow kernel lowers the frame rate instead of building a queue.

function render({ model, el: root }) {
  root.classList.add("fomm-widget", "fomm-live");
  const camera = el("video");
  camera.muted = true;
  camera.playsInline = true;
  const result = el("img", "fomm-result");
  result.alt = "animation";
  const startBtn = el("button", "fomm-start", "\u25B6 Start camera");
  const stopBtn = el("button", "fomm-stop", "\u25A0 Stop");
  const anchorBtn = el("button", "fomm-reanchor", "Re-anchor reference");
  anchorBtn.title = "Use the current camera frame as the neutral pose";
  const bestBtn = el("button", "fomm-best", "Best reference");
  bestBtn.title = "Pick the recent frame whose pose is closest to the photo";
  const recordBtn = el("button", "fomm-record", "\u25CF Record");
  const fps = el("span", "fomm-fps", "");
  const status = el("div", "fomm-status");
  const error = el("div", "fomm-error");
  // Before the first frame: placeholders that say what to do, not an empty video and a broken image.
  const camHint = el("div", "fomm-placeholder", "Press \u25B6 Start camera: your camera appears here.");
  const outHint = el("div", "fomm-placeholder", "Press \u25B6 Start camera: the animated photo appears here.");
  camera.style.display = "none";
  result.style.display = "none";
  const camPane = el("div", "fomm-pane");
  camPane.append(el("div", "fomm-caption", "Camera"), camHint, camera);
  const outPane = el("div", "fomm-pane");
  outPane.append(el("div", "fomm-caption", "Animation"), outHint, result);
  const buttons = el("div", "fomm-row");
  buttons.append(startBtn, stopBtn, anchorBtn, bestBtn, recordBtn, fps);
  const panes = el("div", "fomm-row");
  panes.append(camPane, outPane);
  root.append(buttons, status, error, panes);

  const canvas = document.createElement("canvas");
  let stream = null;
  let running = false;

  function setRunning(on) {
    running = on;
    startBtn.disabled = on;
    for (const b of [stopBtn, anchorBtn, bestBtn, recordBtn]) b.disabled = !on;
  }
  const sync = () => {
    status.textContent = model.get("status");
    error.textContent = model.get("error");
    fps.textContent = model.get("fps") > 0 ? model.get("fps").toFixed(1) + " fps" : "";
    recordBtn.textContent = model.get("recording") ? "\u25A0 Stop recording" : "\u25CF Record";
  };
  model.on("change:status change:error change:fps change:recording", sync);
  sync();
  setRunning(false);

  async function sendFrame() {
    if (!running) return;
    if (camera.videoWidth === 0) {
      setTimeout(sendFrame, 50);
      return;
    }
    try {
      const buf = await grabJpeg(camera, canvas, model.get("width"), 0.85);
      if (running) model.send({ type: "frame" }, undefined, [buf]);
    } catch (err) {
      setTimeout(sendFrame, 100);
    }
  }

  model.on("msg:custom", (msg, buffers) => {
    if (msg.type === "result") {
      if (buffers && buffers.length) {
        const old = result.src;
        result.src = bytesUrl(buffers[0], "image/jpeg");
        if (old) URL.revokeObjectURL(old);
        result.style.display = "";
        outHint.style.display = "none";
      }
      sendFrame();
    } else if (msg.type === "failed") {
      stop();
    }
  });

  async function start() {
    stream = await openCameraFor(model, startBtn);
    if (!stream) return;
    camera.srcObject = stream;
    camera.style.display = "";
    camHint.style.display = "none";
    await camera.play();
    setRunning(true);
    model.send({ type: "start" });
    sendFrame();
  }

  function stop() {
    if (!running && !stream) return;
    setRunning(false);
    stopCamera(stream);
    stream = null;
    camera.srcObject = null;
    camera.style.display = "none";
    camHint.style.display = "";
    model.send({ type: "stop" });
  }

  startBtn.addEventListener("click", start);
  stopBtn.addEventListener("click", stop);
  anchorBtn.addEventListener("click", () => model.send({ type: "reanchor" }));
  bestBtn.addEventListener("click", () => model.send({ type: "best" }));
  recordBtn.addEventListener("click", () => model.send({ type: "record", on: !model.get("recording") }));
  return () => { running = false; stopCamera(stream); };
}

export default { render };
