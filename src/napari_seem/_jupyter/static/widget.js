// napari-seem Jupyter canvas: a plain ES module for anywidget (no build step, no CDN).
//
// Frames: the Python side speaks level-0 (row, col) pixels with pixel centres at integers.
// Here "image units" put pixel edges at integers: image x = col + 0.5, y = row + 0.5,
// so level-0 pixel (r, c) covers [c, c + 1) x [r, r + 1). The view maps image units to
// canvas pixels by  screen = (image - origin) * scale.
//
// State in: overview (RGBA bytes), labels_overview (uint32 ids), preview_mask (uint8),
// class_table, status. State out: prompt_data (the current object's prompts), text, mode,
// live. Custom messages out: {type: "action", name}, {type: "view", box, size, seq};
// in: {type: "view", box, step, shape} + buffers [rgba, labels].

const POSITIVE = "#35d07f";
const NEGATIVE = "#ff5a5f";
const PREVIEW = [255, 214, 10];
const DRAG_PIXELS = 5;
const VIEW_DEBOUNCE_MS = 120;

function bytesOf(value) {
  if (!value) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  return new Uint8Array(0);
}

function uint32Of(value) {
  const bytes = bytesOf(value);
  const copy = new Uint8Array(bytes.byteLength - (bytes.byteLength % 4));
  copy.set(bytes.subarray(0, copy.length));
  return new Uint32Array(copy.buffer);
}

// A distinct, stable colour per label id (golden-angle hues), as [r, g, b].
export function labelColour(id) {
  const hue = (id * 137.508) % 360;
  const s = 0.72;
  const l = 0.56;
  const k = (n) => (n + hue / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [Math.round(f(0) * 255), Math.round(f(8) * 255), Math.round(f(4) * 255)];
}

function cssColour(rgb, alpha = 1) {
  return `rgba(${rgb[0]}, ${rgb[1]}, ${rgb[2]}, ${alpha})`;
}

function canvasFromRGBA(bytes, h, w) {
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, w);
  canvas.height = Math.max(1, h);
  if (h * w * 4 !== bytes.length || h * w === 0) return canvas;
  const ctx = canvas.getContext("2d");
  ctx.putImageData(new ImageData(new Uint8ClampedArray(bytes), w, h), 0, 0);
  return canvas;
}

// Label ids -> translucent colours, with opaque pixels on object borders.
function canvasFromLabels(ids, h, w, alpha = 0.42) {
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, w);
  canvas.height = Math.max(1, h);
  if (ids.length < h * w || h * w === 0) return canvas;
  const out = new Uint8ClampedArray(h * w * 4);
  const cache = new Map();
  const fill = Math.round(alpha * 255);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const p = i * w + j;
      const id = ids[p];
      if (id === 0) continue;
      let rgb = cache.get(id);
      if (!rgb) {
        rgb = labelColour(id);
        cache.set(id, rgb);
      }
      const edge =
        (i > 0 && ids[p - w] !== id) || (i < h - 1 && ids[p + w] !== id) ||
        (j > 0 && ids[p - 1] !== id) || (j < w - 1 && ids[p + 1] !== id);
      out[4 * p] = rgb[0];
      out[4 * p + 1] = rgb[1];
      out[4 * p + 2] = rgb[2];
      out[4 * p + 3] = edge ? 235 : fill;
    }
  }
  canvas.getContext("2d").putImageData(new ImageData(out, w, h), 0, 0);
  return canvas;
}

function canvasFromMask(mask, h, w, rgb) {
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, w);
  canvas.height = Math.max(1, h);
  if (mask.length < h * w || h * w === 0) return canvas;
  const out = new Uint8ClampedArray(h * w * 4);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const p = i * w + j;
      if (!mask[p]) continue;
      const edge =
        i === 0 || i === h - 1 || j === 0 || j === w - 1 ||
        !mask[p - w] || !mask[p + w] || !mask[p - 1] || !mask[p + 1];
      out[4 * p] = rgb[0];
      out[4 * p + 1] = rgb[1];
      out[4 * p + 2] = rgb[2];
      out[4 * p + 3] = edge ? 255 : 110;
    }
  }
  canvas.getContext("2d").putImageData(new ImageData(out, w, h), 0, 0);
  return canvas;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, title, className = "seem-btn") {
  const node = el("button", className, label);
  node.type = "button";
  node.title = title;
  return node;
}

function render({ model, el: host }) {
  // ---------------------------------------------------------------- layout
  const root = el("div", "seem-root");
  const toolbar = el("div", "seem-toolbar");
  const modes = el("div", "seem-group seem-modes");
  const modeButtons = {
    point: button("Click / Box", "click: positive point · Shift/Alt-click: negative · drag: box"),
    scribble: button("Scribble", "drag to scribble · Shift/Alt-drag: negative (or Ctrl-drag in any mode)"),
    pan: button("Pan", "drag to pan (right-drag pans in any mode) · wheel: zoom"),
  };
  for (const [name, node] of Object.entries(modeButtons)) {
    node.dataset.mode = name;
    node.addEventListener("click", () => {
      model.set("mode", name);
      model.save_changes();
    });
    modes.append(node);
  }
  const textInput = el("input", "seem-text");
  textInput.type = "text";
  textInput.placeholder = "text prompt, e.g. nucleus";
  textInput.setAttribute("aria-label", "text prompt");
  const actions = el("div", "seem-group");
  const actionButtons = {
    segment: button("Segment", "segment the current prompts (Enter in the text box)", "seem-btn seem-primary"),
    commit: button("Commit", "paint the preview into the labels"),
    undo: button("Undo", "remove the last prompt, else the last commit"),
    clear: button("Clear", "drop the current prompts and preview"),
    everything: button("Everything", "segment every object of the vocabulary"),
    refer: button("Refer", "find the object marked on the linked example image"),
  };
  for (const [name, node] of Object.entries(actionButtons)) {
    node.dataset.action = name;
    node.addEventListener("click", () => model.send({ type: "action", name }));
    actions.append(node);
  }
  const liveLabel = el("label", "seem-live");
  const liveBox = el("input");
  liveBox.type = "checkbox";
  liveLabel.append(liveBox, document.createTextNode(" live"));
  const fitButton = button("Fit", "show the whole image", "seem-btn seem-ghost");
  toolbar.append(modes, textInput, actions, liveLabel, fitButton);

  const stage = el("div", "seem-stage");
  const canvas = el("canvas", "seem-canvas");
  canvas.tabIndex = 0;
  const badge = el("div", "seem-badge");
  stage.append(canvas, badge);

  const footer = el("div", "seem-footer");
  const statusLine = el("div", "seem-status");
  const progressBox = el("div", "seem-progress");
  const progressBar = el("div", "seem-progress-bar");
  const cancelButton = button("Cancel", "stop the running job", "seem-btn seem-ghost");
  cancelButton.addEventListener("click", () => model.send({ type: "action", name: "cancel" }));
  progressBox.append(el("div", "seem-progress-track"), cancelButton);
  progressBox.firstChild.append(progressBar);
  const legend = el("div", "seem-legend");
  footer.append(statusLine, progressBox, legend);
  root.append(toolbar, stage, footer);
  host.append(root);
  const ctx = canvas.getContext("2d");

  // ---------------------------------------------------------------- state
  let imageH = 1;
  let imageW = 1;
  let overviewCanvas = null;
  let overviewLabels = null;
  let overviewStep = 1;
  let previewCanvas = null;
  let viewTile = null; // {box, step, shape, image, labels}
  let viewSeq = 0;
  let viewTimer = null;
  let origin = { x: 0, y: 0 };
  let scale = 1;
  let fitted = false;
  let drag = null;
  let hover = null;

  function loadImage() {
    const [h, w] = model.get("image_shape");
    imageH = h;
    imageW = w;
    const [oh, ow] = model.get("overview_shape");
    overviewStep = model.get("overview_step") || 1;
    overviewCanvas = canvasFromRGBA(bytesOf(model.get("overview")), oh, ow);
    loadLabels();
  }

  function loadLabels() {
    const [oh, ow] = model.get("overview_shape");
    overviewLabels = canvasFromLabels(uint32Of(model.get("labels_overview")), oh, ow);
  }

  function loadPreview() {
    const [mh, mw] = model.get("preview_shape");
    previewCanvas = mh * mw ? canvasFromMask(bytesOf(model.get("preview_mask")), mh, mw, PREVIEW) : null;
  }

  // ---------------------------------------------------------------- geometry
  const toScreen = (x, y) => [(x - origin.x) * scale, (y - origin.y) * scale];
  const toImage = (sx, sy) => [sx / scale + origin.x, sy / scale + origin.y];
  const toRowCol = (sx, sy) => {
    const [x, y] = toImage(sx, sy);
    const row = Math.min(Math.max(y - 0.5, -0.5), imageH - 0.5);
    const col = Math.min(Math.max(x - 0.5, -0.5), imageW - 0.5);
    return [Math.round(row * 100) / 100, Math.round(col * 100) / 100];
  };
  const inside = (sx, sy) => {
    const [x, y] = toImage(sx, sy);
    return x >= 0 && y >= 0 && x <= imageW && y <= imageH;
  };

  function fit() {
    const cw = canvas.width;
    const ch = canvas.height;
    scale = Math.min(cw / imageW, ch / imageH);
    origin = { x: (imageW - cw / scale) / 2, y: (imageH - ch / scale) / 2 };
    fitted = true;
    requestView();
    draw();
  }

  function resize() {
    const width = Math.max(200, Math.floor(stage.clientWidth || host.clientWidth || 640));
    const height = Math.max(160, model.get("height") || 480);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
      if (!fitted || drag === null) fit();
    }
  }

  // ---------------------------------------------------------------- views from Python
  function requestView() {
    clearTimeout(viewTimer);
    viewTimer = setTimeout(() => {
      // the overview suffices while one overview pixel is at most ~1.5 screen pixels
      if (overviewStep * scale <= 1.5) return;
      const [x0, y0] = toImage(0, 0);
      const [x1, y1] = toImage(canvas.width, canvas.height);
      const box = [
        Math.max(0, Math.floor(y0)),
        Math.max(0, Math.floor(x0)),
        Math.min(imageH, Math.ceil(y1)),
        Math.min(imageW, Math.ceil(x1)),
      ];
      if (box[2] <= box[0] || box[3] <= box[1]) return;
      viewSeq += 1;
      model.send({
        type: "view",
        seq: viewSeq,
        box,
        size: [canvas.height, canvas.width],
      });
    }, VIEW_DEBOUNCE_MS);
  }

  function onCustom(msg, buffers) {
    if (!msg || msg.type !== "view") return;
    if (msg.seq !== viewSeq && viewTile && msg.seq < viewTile.seq) return;
    const [h, w] = msg.shape;
    viewTile = {
      seq: msg.seq,
      box: msg.box,
      step: msg.step,
      image: canvasFromRGBA(bytesOf(buffers[0]), h, w),
      labels: canvasFromLabels(uint32Of(buffers[1]), h, w),
      shape: [h, w],
    };
    draw();
  }

  function tileUsable() {
    if (!viewTile) return false;
    // a tile is worth drawing only while it is finer than the overview
    return viewTile.step < overviewStep;
  }

  // ---------------------------------------------------------------- drawing
  function drawLayer(image, y, x, h, w) {
    const [sx, sy] = toScreen(x, y);
    ctx.drawImage(image, sx, sy, w * scale, h * scale);
  }

  function draw() {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#15171a";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = scale < 1;
    const [oh, ow] = model.get("overview_shape");
    if (overviewCanvas) drawLayer(overviewCanvas, 0, 0, oh * overviewStep, ow * overviewStep);
    const tile = tileUsable() ? viewTile : null;
    if (tile) {
      const [r0, c0] = tile.box;
      drawLayer(tile.image, r0, c0, tile.shape[0] * tile.step, tile.shape[1] * tile.step);
    }
    ctx.imageSmoothingEnabled = false;
    if (overviewLabels && !tile) drawLayer(overviewLabels, 0, 0, oh * overviewStep, ow * overviewStep);
    if (overviewLabels && tile) {
      // labels outside the tile from the overview, inside it from the tile
      ctx.save();
      const [r0, c0, r1, c1] = tile.box;
      const [sx0, sy0] = toScreen(c0, r0);
      const [sx1, sy1] = toScreen(c1, r1);
      ctx.beginPath();
      ctx.rect(0, 0, canvas.width, canvas.height);
      ctx.rect(sx0, sy0, sx1 - sx0, sy1 - sy0);
      ctx.clip("evenodd");
      drawLayer(overviewLabels, 0, 0, oh * overviewStep, ow * overviewStep);
      ctx.restore();
      drawLayer(tile.labels, r0, c0, tile.shape[0] * tile.step, tile.shape[1] * tile.step);
    }
    if (previewCanvas) {
      const [r0, c0, r1, c1] = model.get("preview_box");
      drawLayer(previewCanvas, r0, c0, r1 - r0, c1 - c0);
    }
    drawNames();
    drawPrompts();
    drawDrag();
  }

  function drawTag(text, sx, sy, rgb) {
    ctx.font = "600 12px system-ui, -apple-system, 'Segoe UI', sans-serif";
    const width = ctx.measureText(text).width + 10;
    const x = Math.min(Math.max(sx, 2), canvas.width - width - 2);
    const y = Math.min(Math.max(sy - 20, 2), canvas.height - 20);
    ctx.fillStyle = "rgba(18, 20, 24, 0.82)";
    ctx.beginPath();
    ctx.roundRect ? ctx.roundRect(x, y, width, 18, 4) : ctx.rect(x, y, width, 18);
    ctx.fill();
    ctx.fillStyle = cssColour(rgb);
    ctx.fillRect(x, y, 3, 18);
    ctx.fillStyle = "#f4f5f7";
    ctx.fillText(text, x + 7, y + 13);
  }

  function drawNames() {
    const rows = model.get("class_table") || [];
    let drawn = 0;
    for (const row of rows) {
      if (!row.bbox || drawn > 60) continue;
      const [r0, c0, r1, c1] = row.bbox;
      const [sx0, sy0] = toScreen(c0, r0);
      const [sx1, sy1] = toScreen(c1, r1);
      if (sx1 < 0 || sy1 < 0 || sx0 > canvas.width || sy0 > canvas.height) continue;
      if (sx1 - sx0 < 28 && sy1 - sy0 < 28) continue;
      drawTag(`${row.id} ${row.class_name || "object"}`, sx0, sy0, labelColour(row.id));
      drawn += 1;
    }
    const label = model.get("preview_label");
    if (previewCanvas && label) {
      const [r0, c0] = model.get("preview_box");
      const [sx, sy] = toScreen(c0, r0);
      drawTag(label, sx, sy, PREVIEW);
    }
  }

  function pathOf(coords) {
    ctx.beginPath();
    coords.forEach(([row, col], i) => {
      const [sx, sy] = toScreen(col + 0.5, row + 0.5);
      if (i === 0) ctx.moveTo(sx, sy);
      else ctx.lineTo(sx, sy);
    });
  }

  function drawPrompts() {
    const prompts = model.get("prompt_data") || [];
    ctx.lineJoin = "round";
    ctx.lineCap = "round";
    for (const p of prompts) {
      if (p.kind === "box") {
        const [sx0, sy0] = toScreen(p.col0 + 0.5, p.row0 + 0.5);
        const [sx1, sy1] = toScreen(p.col1 + 0.5, p.row1 + 0.5);
        ctx.setLineDash([6, 4]);
        ctx.lineWidth = 2;
        ctx.strokeStyle = POSITIVE;
        ctx.strokeRect(sx0, sy0, sx1 - sx0, sy1 - sy0);
        ctx.setLineDash([]);
      } else if (p.kind === "scribble") {
        ctx.lineWidth = 3;
        ctx.strokeStyle = p.positive ? POSITIVE : NEGATIVE;
        pathOf(p.coords);
        ctx.stroke();
      }
    }
    for (const p of prompts) {
      if (p.kind !== "point") continue;
      const [sx, sy] = toScreen(p.col + 0.5, p.row + 0.5);
      ctx.beginPath();
      ctx.arc(sx, sy, 6, 0, 2 * Math.PI);
      ctx.fillStyle = p.positive ? POSITIVE : NEGATIVE;
      ctx.fill();
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#ffffff";
      ctx.stroke();
      if (!p.positive) {
        ctx.beginPath();
        ctx.moveTo(sx - 3, sy);
        ctx.lineTo(sx + 3, sy);
        ctx.stroke();
      }
    }
  }

  function drawDrag() {
    if (!drag || !drag.moved) return;
    if (drag.kind === "box") {
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = 2;
      ctx.strokeStyle = POSITIVE;
      ctx.strokeRect(drag.x0, drag.y0, drag.x - drag.x0, drag.y - drag.y0);
      ctx.setLineDash([]);
    } else if (drag.kind === "scribble") {
      ctx.lineWidth = 3;
      ctx.strokeStyle = drag.negative ? NEGATIVE : POSITIVE;
      pathOf(drag.coords);
      ctx.stroke();
    }
  }

  // ---------------------------------------------------------------- input
  function addPrompt(prompt) {
    model.set("prompt_data", [...(model.get("prompt_data") || []), prompt]);
    model.save_changes();
    draw();
  }

  function localXY(event) {
    const rect = canvas.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) * canvas.width) / Math.max(rect.width, 1),
      ((event.clientY - rect.top) * canvas.height) / Math.max(rect.height, 1),
    ];
  }

  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener("pointerdown", (event) => {
    const [x, y] = localXY(event);
    const mode = model.get("mode");
    const negative = event.shiftKey || event.altKey;
    let kind = "click";
    if (event.button === 1 || event.button === 2 || mode === "pan") kind = "pan";
    else if (event.ctrlKey || event.metaKey || mode === "scribble") kind = "scribble";
    if (kind !== "pan" && !inside(x, y)) return;
    canvas.setPointerCapture?.(event.pointerId);
    drag = { kind, x0: x, y0: y, x, y, moved: false, negative, origin: { ...origin } };
    if (kind === "scribble") drag.coords = [toRowCol(x, y)];
    event.preventDefault();
  });
  canvas.addEventListener("pointermove", (event) => {
    const [x, y] = localXY(event);
    hover = [x, y];
    if (!drag) return;
    drag.x = x;
    drag.y = y;
    if (Math.hypot(x - drag.x0, y - drag.y0) > DRAG_PIXELS) drag.moved = true;
    if (drag.kind === "pan") {
      origin = {
        x: drag.origin.x - (x - drag.x0) / scale,
        y: drag.origin.y - (y - drag.y0) / scale,
      };
    } else if (drag.kind === "click" && drag.moved) {
      drag.kind = "box";
    } else if (drag.kind === "scribble") {
      drag.coords.push(toRowCol(x, y));
    }
    draw();
  });
  const finish = (event) => {
    if (!drag) return;
    const done = drag;
    drag = null;
    const [x, y] = localXY(event);
    if (done.kind === "pan") {
      requestView();
    } else if (done.kind === "click") {
      const [row, col] = toRowCol(x, y);
      addPrompt({ kind: "point", row, col, positive: !done.negative });
    } else if (done.kind === "box") {
      const [r0, c0] = toRowCol(done.x0, done.y0);
      const [r1, c1] = toRowCol(x, y);
      if (r0 !== r1 && c0 !== c1) {
        addPrompt({
          kind: "box",
          row0: Math.min(r0, r1),
          col0: Math.min(c0, c1),
          row1: Math.max(r0, r1),
          col1: Math.max(c0, c1),
        });
      }
    } else if (done.kind === "scribble") {
      addPrompt({ kind: "scribble", coords: done.coords, positive: !done.negative });
    }
    draw();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", () => {
    drag = null;
    draw();
  });
  canvas.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      const [x, y] = localXY(event);
      const [ix, iy] = toImage(x, y);
      const fitScale = Math.min(canvas.width / imageW, canvas.height / imageH);
      const factor = Math.exp(-event.deltaY * 0.0015);
      scale = Math.min(Math.max(scale * factor, fitScale / 4), 40);
      origin = { x: ix - x / scale, y: iy - y / scale };
      requestView();
      draw();
    },
    { passive: false },
  );
  textInput.addEventListener("change", () => {
    model.set("text", textInput.value);
    model.save_changes();
  });
  textInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      model.set("text", textInput.value);
      model.save_changes();
      model.send({ type: "action", name: "segment" });
    }
  });
  liveBox.addEventListener("change", () => {
    model.set("live", liveBox.checked);
    model.save_changes();
  });
  fitButton.addEventListener("click", fit);

  // ---------------------------------------------------------------- model events
  function syncControls() {
    const mode = model.get("mode");
    for (const [name, node] of Object.entries(modeButtons)) {
      node.classList.toggle("seem-active", name === mode);
    }
    canvas.dataset.mode = mode;
    if (document.activeElement !== textInput) textInput.value = model.get("text") || "";
    liveBox.checked = !!model.get("live");
    const busy = !!model.get("busy");
    root.classList.toggle("seem-busy", busy);
    actionButtons.segment.disabled = busy;
    actionButtons.everything.disabled = busy;
    actionButtons.refer.hidden = !model.get("example_label");
    actionButtons.refer.title = `find the object marked on ${model.get("example_label") || "the example"}`;
    const error = model.get("error");
    statusLine.textContent = error || model.get("status") || "click an object to segment it";
    statusLine.classList.toggle("seem-error", !!error);
    const job = model.get("job");
    progressBox.classList.toggle("seem-visible", !!job);
    progressBar.style.width = `${Math.round(100 * (model.get("progress") || 0))}%`;
    const title = model.get("title");
    badge.textContent = `${title ? title + " · " : ""}${imageH} × ${imageW}`;
  }

  function syncLegend() {
    legend.replaceChildren();
    const rows = model.get("class_table") || [];
    const counts = new Map();
    for (const row of rows) {
      const name = row.class_name || "object";
      if (!counts.has(name)) counts.set(name, { n: 0, id: row.id });
      counts.get(name).n += 1;
    }
    for (const [name, { n, id }] of counts) {
      const chip = el("span", "seem-chip");
      const dot = el("span", "seem-dot");
      dot.style.background = cssColour(labelColour(id));
      chip.append(dot, document.createTextNode(`${name} × ${n}`));
      legend.append(chip);
    }
  }

  const handlers = {
    "change:overview": () => { loadImage(); draw(); },
    "change:labels_overview": () => { loadLabels(); draw(); },
    "change:preview_mask": () => { loadPreview(); draw(); },
    "change:preview_box": () => { loadPreview(); draw(); },
    "change:prompt_data": () => draw(),
    "change:class_table": () => { syncLegend(); draw(); },
    "change:height": () => resize(),
  };
  for (const name of ["mode", "text", "live", "busy", "status", "error", "job", "progress", "example_label", "title"]) {
    handlers[`change:${name}`] = syncControls;
  }
  for (const [event, handler] of Object.entries(handlers)) model.on(event, handler);
  model.on("msg:custom", onCustom);

  loadImage();
  loadPreview();
  syncControls();
  syncLegend();
  const observer = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => resize()) : null;
  observer?.observe(stage);
  requestAnimationFrame(() => {
    resize();
    fit();
  });

  return () => {
    observer?.disconnect();
    clearTimeout(viewTimer);
    for (const [event, handler] of Object.entries(handlers)) model.off(event, handler);
    model.off("msg:custom", onCustom);
  };
}

export default { render };
