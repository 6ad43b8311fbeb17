// Pages for people: small enhancements. Every page works without this file, only less smoothly:
// the upload form posts, the job page refreshes itself, before and after show side by side.
"use strict";
document.documentElement.classList.add("js");

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

// Times are written in UTC by the server; show them in the reader's own time zone.
function localTimes() {
  const format = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  $$("time[datetime]").forEach((el) => {
    const at = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) el.textContent = format.format(at);
  });
}

// Where a picture of width x height fits on paper of pw x ph inches at dpi: the paper turned to the
// picture's orientation, the picture kept whole (model/print_size.py fit_to_print, the same rule).
function fitToPrint(width, height, [pw, ph], dpi) {
  if ((width > height && pw < ph) || (width < height && pw > ph)) [pw, ph] = [ph, pw];
  const boxW = Math.round(pw * dpi), boxH = Math.round(ph * dpi);
  const scale = Math.min(boxW / width, boxH / height);
  return [Math.max(1, Math.min(boxW, Math.round(width * scale))), Math.max(1, Math.min(boxH, Math.round(height * scale)))];
}

function verdict(dpi) {
  if (dpi >= 300) return "photo-lab sharp";
  if (dpi >= 150) return "sharp from a metre away";
  if (dpi >= 100) return "good from a metre away, a little soft up close";
  return "soft up close, fine from a few steps away";
}

function paragraph(text) {
  const p = document.createElement("p");
  p.textContent = text;
  return p;
}

// What the chosen photo will become, worked out from its natural size before anything is sent.
function describePhoto(width, height, rules) {
  const outW = width * rules.scale, outH = height * rules.scale;
  const nodes = [paragraph(`This photo is ${width} × ${height} px. Restored ${rules.scale}× it will be ${outW} × ${outH} px.`)];
  if (width * height > rules.max_pixels) {
    nodes.push(paragraph(`It has ${(width * height / 1e6).toFixed(1)} megapixels; the service accepts at most ` +
      `${(rules.max_pixels / 1e6).toFixed(0)}, so it will be refused. Please choose a smaller copy.`));
    return nodes;
  }
  const list = document.createElement("ul");
  list.className = "fits";
  let largest = null;
  for (const print of rules.prints) {
    const fitted = fitToPrint(outW, outH, print.inches, rules.dpi);
    const dpi = Math.round(rules.dpi * outW / fitted[0]);
    const li = document.createElement("li");
    const strong = document.createElement("strong");
    strong.textContent = `${print.label}: `;
    li.append(strong, `${dpi} dpi, ${verdict(dpi)}.`);
    list.append(li);
    if (largest === null) largest = { print, fitted, dpi };
  }
  nodes.push(list);
  if (largest.dpi < rules.dpi) {
    const needW = Math.ceil(largest.fitted[0] / rules.scale), needH = Math.ceil(largest.fitted[1] / rules.scale);
    nodes.push(paragraph(`For ${rules.dpi} dpi on ${largest.print.label} the photo as sent would need to be at least ` +
      `${needW} × ${needH} px. The downloads fitted to each paper size are made at ${rules.dpi} dpi all the same, ` +
      "as print shops ask; the difference is how much fine detail there is to print."));
  } else {
    nodes.push(paragraph(`That is enough for ${rules.dpi} dpi on every size listed.`));
  }
  return nodes;
}

function uploadForm() {
  const form = $("#upload-form");
  if (!form) return;
  const rules = JSON.parse(form.dataset.rules);
  const input = $("#image", form), drop = $("#drop", form), preview = $("#preview", form);
  const image = $("#preview-image", form), facts = $("#preview-facts", form), message = $("#upload-message");
  const button = $("#upload-button", form), progress = $("#upload-progress", form), bar = $("#upload-bar", form);
  const faces = $("#faces", form), facesList = $("#faces-list", form), facesStatus = $("#faces-status", form);
  const crop = $("#crop", form);
  let objectUrl = null;
  let lookup = 0; // which photo's faces are wanted: an answer for an earlier photo is dropped

  const describe = (width, height) => facts.replaceChildren(...describePhoto(width, height, rules));

  // One choice of the face picker: the whole photo (box null) or a face's crop, with its thumbnail.
  function choice(text, box) {
    const label = document.createElement("label");
    label.className = "face-choice";
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "face";
    radio.value = box ? `${box.x},${box.y},${box.width},${box.height}` : "";
    radio.addEventListener("change", () => {
      crop.value = radio.value;
      describe(box ? box.width : image.naturalWidth, box ? box.height : image.naturalHeight);
    });
    label.append(radio);
    if (box) {
      // The preview <img> is drawn as shown (EXIF orientation applied), the pixels the crop is in.
      const canvas = document.createElement("canvas");
      canvas.height = 112;
      canvas.width = Math.max(1, Math.round((box.width * canvas.height) / box.height));
      canvas.getContext("2d").drawImage(image, box.x, box.y, box.width, box.height, 0, 0, canvas.width, canvas.height);
      canvas.setAttribute("aria-hidden", "true");
      label.append(canvas);
    }
    const span = document.createElement("span");
    span.textContent = text;
    label.append(span);
    return label;
  }

  // POST /faces (the API's POST /v1/faces): offer each face's head-and-shoulders crop, or the whole photo.
  async function findFaces(file) {
    const mine = ++lookup;
    const data = new FormData();
    data.append("csrf_token", form.elements.csrf_token.value);
    data.append("image", file);
    facesList.replaceChildren();
    facesStatus.textContent = "Looking for the faces in the photo…";
    faces.hidden = false;
    let body = null;
    try {
      const response = await fetch(faces.dataset.url, { method: "POST", body: data, headers: { Accept: "application/json" } });
      body = await response.json();
      if (!response.ok) body = null;
    } catch (_) { body = null; }
    if (mine !== lookup) return;
    if (!body) {
      facesStatus.textContent = "The faces could not be looked for just now; the whole photo will be restored.";
      return;
    }
    const found = body.faces;
    if (!found.length) {
      facesStatus.textContent = "No face was found in this photo: the whole photo will be restored.";
      return;
    }
    facesStatus.textContent = found.length === 1
      ? "One face was found. Restore the whole photo, or only this person's head and shoulders:"
      : `${found.length} faces were found, numbered from the left. Choose the person whose portrait this is:`;
    const whole = choice(`The whole photo, ${body.image.width} × ${body.image.height} px`, null);
    $("input", whole).checked = true;
    facesList.replaceChildren(whole, ...found.map((face, i) =>
      choice(`Face ${i + 1} from the left: head and shoulders, ${face.crop.width} × ${face.crop.height} px`, face.crop)));
  }

  const say = (text) => {
    message.textContent = text || "";
    message.hidden = !text;
    if (text) message.focus();
  };
  const megabytes = (bytes) => (bytes / 1048576).toFixed(1).replace(/\.0$/, "");

  function show(file) {
    say("");
    preview.hidden = true;
    faces.hidden = true;
    crop.value = "";
    lookup += 1;
    if (!file) return;
    if (file.size > rules.max_bytes) {
      say(`This file is ${megabytes(file.size)} MB; the most the service accepts is ${megabytes(rules.max_bytes)} MB. ` +
          "Please send a smaller copy of the photo.");
      return;
    }
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(file);
    image.hidden = false;
    image.onload = () => {
      describe(image.naturalWidth, image.naturalHeight);
      preview.hidden = false;
      findFaces(file);
    };
    image.onerror = () => {
      image.hidden = true;
      facts.replaceChildren(paragraph("This browser cannot show this file, so its size is not known yet " +
        "(TIFF files, for example). The service checks it when you send it."));
      preview.hidden = false;
    };
    image.src = objectUrl;
  }

  input.addEventListener("change", () => show(input.files[0]));
  ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      show(input.files[0]);
    }
  });

  // Sent with XMLHttpRequest for its upload progress; the answer is JSON (the same checks as POST /v1/jobs).
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!input.files.length) {
      say("Please choose a photo first.");
      input.focus();
      return;
    }
    const finish = () => {
      button.disabled = false;
      progress.hidden = true;
    };
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
    });
    request.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch (_) { /* not JSON: a proxy's error page */ }
      if (request.status < 300 && body && body.url) {
        window.location.assign(body.url);
        return;
      }
      finish();
      say(body && body.error ? body.error.plain : `The photo could not be sent (HTTP ${request.status}). Please try again.`);
    });
    request.addEventListener("error", () => {
      finish();
      say("The photo did not reach the service. Please check the connection and try again.");
    });
    button.disabled = true;
    bar.value = 0;
    progress.hidden = false;
    request.send(new FormData(form));
  });
}

// The job page asks for the job every half second while it may change, and reloads once it has ended.
function jobProgress() {
  const box = $("#job");
  if (!box || box.dataset.busy !== "true") return;
  const bar = $("#job-progress"), percent = $("#job-percent"), detail = $("#job-detail"), label = $("#job-label");
  let status = box.dataset.status;
  async function tick() {
    try {
      const response = await fetch(box.dataset.statusUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (response.status === 401 || response.status === 404) {
        window.location.reload();
        return;
      }
      if (response.ok) {
        const { state } = await response.json();
        if (state.percent === null) bar.removeAttribute("value");
        else bar.value = state.percent;
        percent.textContent = state.percent === null ? "" : `${state.percent} %`;
        detail.textContent = state.detail;
        if (state.status !== status) {
          status = state.status;
          const badge = label.querySelector(".badge");
          badge.className = `badge ${state.status}`;
          badge.textContent = state.label;
        }
        if (!state.busy) {
          window.location.reload();
          return;
        }
      }
    } catch (_) { /* a dropped connection: try again at the next tick */ }
    window.setTimeout(tick, 500);
  }
  window.setTimeout(tick, 500);
}

// Before/after: the original on the left of the line, the restored portrait on the right.
function compareSliders() {
  $$("[data-compare]").forEach((box) => {
    const range = $(".compare-range", box), before = $(".compare-before", box), line = $(".compare-line", box);
    const set = () => {
      before.style.clipPath = `inset(0 ${100 - range.value}% 0 0)`;
      line.style.left = `${range.value}%`;
    };
    range.hidden = false;
    $(".compare-help", box).hidden = false;
    range.addEventListener("input", set);
    set();
  });
}

// "Select all" in the dashboard's job tables.
function selectAll() {
  $$("[data-select-all]").forEach((label) => {
    const form = label.closest("form");
    label.hidden = false;
    $("input", label).addEventListener("change", (event) => {
      $$('input[name="job_id"]', form).forEach((box) => { box.checked = event.target.checked; });
    });
  });
}

localTimes();
uploadForm();
jobProgress();
compareSliders();
selectAll();
