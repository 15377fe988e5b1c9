// Shared browser-camera helpers, prepended to recorder.js and live.js by fomm_lab/widgets/_assets.py.

function cameraErrorMessage(err) {
  const name = (err && err.name) || "Error";
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    return "Camera access was denied (" + name + "). Allow the camera for this page " +
      "(camera icon in the address bar or site settings), then press the button again.";
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return "No camera was found (" + name + "). Connect a webcam and press the button again, " +
      "or use a driving video file instead.";
  }
  if (name === "NotReadableError" || name === "TrackStartError") {
    return "The camera is busy or unreadable (" + name + "). Close other programs using it and try again.";
  }
  if (name === "NoMediaDevices") {
    return "This page cannot use a camera: browsers only allow it on https:// pages or on " +
      "http://localhost / 127.0.0.1. Open JupyterLab over HTTPS or through an SSH tunnel to localhost.";
  }
  return "Could not open the camera (" + name + ": " + ((err && err.message) || err) + ").";
}

async function openCamera(width, height, audio) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    const err = new Error("navigator.mediaDevices is not available");
    err.name = "NoMediaDevices";
    throw err;
  }
  return navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: width }, height: { ideal: height } },
    audio: !!audio,
  });
}

// Open the camera for a widget: clears the widget's error first; on failure reports the reason in
// the model's "error"/"status", re-enables ``button`` and resolves to null. With ``audio`` the
// microphone is asked for too; when it cannot be had, the camera alone is opened and the model's
// "sound_note" says why the recording is silent.
async function openCameraFor(model, button, audio) {
  model.set("error", "");
  model.save_changes();
  button.disabled = true;
  try {
    if (audio) {
      try {
        const stream = await openCamera(model.get("width"), model.get("height"), true);
        model.set("sound_note", stream.getAudioTracks().length ? "" : "the browser gave no microphone");
        model.save_changes();
        return stream;
      } catch (err) {
        if (err && err.name === "NoMediaDevices") throw err;
        model.set("sound_note", "no microphone (" + ((err && err.name) || "Error") + ")");
        model.save_changes();
      }
    }
    return await openCamera(model.get("width"), model.get("height"), false);
  } catch (err) {
    model.set("error", cameraErrorMessage(err));
    model.set("status", "camera unavailable");
    model.save_changes();
    button.disabled = false;
    return null;
  }
}

function stopCamera(stream) {
  if (stream) stream.getTracks().forEach((t) => t.stop());
}

// JPEG-encode the current video frame; resolves to an ArrayBuffer.
function grabJpeg(video, canvas, maxWidth, quality) {
  const scale = Math.min(1, maxWidth / video.videoWidth);
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? blob.arrayBuffer().then(resolve, reject) : reject(new Error("empty frame"))),
      "image/jpeg", quality);
  });
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function bytesUrl(buffer, type) {
  return URL.createObjectURL(new Blob([buffer], { type }));
}
