// Comparison player: several videos with captions, one shared play/pause and scrub bar.

function render({ model, el: root }) {
  root.classList.add("fomm-widget", "fomm-compare");
  const panes = el("div", "fomm-row");
  const playBtn = el("button", "fomm-play", "\u25B6 Play");
  const scrub = el("input", "fomm-scrub");
  scrub.type = "range";
  scrub.min = 0;
  scrub.step = 0.01;
  scrub.value = 0;
  scrub.style.flex = "1";
  const time = el("span", "fomm-fps", "0.00 s");
  const controls = el("div", "fomm-row");
  controls.style.alignItems = "center";
  controls.append(playBtn, scrub, time);
  root.append(panes, controls);

  const videos = [];
  const urls = [];
  const captions = model.get("captions");
  model.get("videos").forEach((data, i) => {
    const url = bytesUrl(data, "video/mp4");
    urls.push(url);
    const video = el("video");
    video.src = url;
    video.muted = true;
    video.playsInline = true;
    video.preload = "auto";
    const pane = el("div", "fomm-pane");
    pane.append(el("div", "fomm-caption", captions[i] || ""), video);
    panes.append(pane);
    videos.push(video);
  });
  if (!videos.length) return;
  const lead = videos[0];

  const duration = () => Math.max(...videos.map((v) => (isFinite(v.duration) ? v.duration : 0)));
  lead.addEventListener("loadedmetadata", () => { scrub.max = duration(); });
  const seek = (t) => videos.forEach((v) => { v.currentTime = Math.min(t, v.duration || t); });
  lead.addEventListener("timeupdate", () => {
    scrub.value = lead.currentTime;
    time.textContent = lead.currentTime.toFixed(2) + " s";
    // keep the followers within one frame or so of the lead
    for (const v of videos.slice(1)) {
      if (Math.abs(v.currentTime - lead.currentTime) > 0.08) v.currentTime = lead.currentTime;
    }
  });
  lead.addEventListener("ended", () => {
    videos.forEach((v) => v.pause());
    playBtn.textContent = "\u25B6 Play";
  });
  playBtn.addEventListener("click", () => {
    if (lead.paused) {
      if (lead.ended) seek(0);
      videos.forEach((v) => v.play());
      playBtn.textContent = "\u275A\u275A Pause";
    } else {
      videos.forEach((v) => v.pause());
      playBtn.textContent = "\u25B6 Play";
    }
  });
  scrub.addEventListener("input", () => seek(Number(scrub.value)));
  return () => urls.forEach((u) => URL.revokeObjectURL(u));
}

export default { render };
