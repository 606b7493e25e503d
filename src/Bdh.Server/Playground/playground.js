// The BDH playground: streams a completion from /v1/completions with the bdh.activity extension (see README,
// "Serve it") and draws, per generated token, the layers' activation densities, the most active neurons, and
// heatmaps of the synaptic state rho.
"use strict";

const $ = id => document.getElementById(id);
let controller = null;

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function showModel() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (response.ok) $("model-name").textContent = (await response.json()).data[0].id;
  } catch (e) { /* the name is decoration: generation reports errors itself */ }
}

function request() {
  const body = {
    prompt: $("prompt").value,
    max_tokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    stream: true,
    bdh_activity: true,
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  return body;
}

// Server-sent events from a fetch body: "event: NAME" (optional) and "data: ..." lines, ended by a blank line.
async function* events(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = null, data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      yield { name, data };
    }
  }
}

async function generate() {
  controller = new AbortController();
  $("generate").disabled = true;
  $("stop").disabled = false;
  $("prompt-echo").textContent = $("prompt").value;
  $("completion").textContent = "";
  $("activity").dataset.tokens = "0";
  $("status").textContent = "generating…";
  const started = performance.now();
  let tokens = 0;
  try {
    const response = await fetch("/v1/completions", { method: "POST", headers: headers(), body: JSON.stringify(request()), signal: controller.signal });
    if (!response.ok) {
      const error = await response.json().catch(() => ({ error: { message: response.statusText } }));
      $("status").textContent = `error ${response.status}: ${error.error.message}`;
      return;
    }
    for await (const event of events(response.body)) {
      if (event.data === "[DONE]") break;
      const json = JSON.parse(event.data);
      if (event.name === "bdh.activity") { showActivity(json); continue; }
      for (const choice of json.choices) {
        $("completion").textContent += choice.text;
        if (choice.finish_reason) $("status").textContent = `done (${choice.finish_reason})`;
      }
      tokens++;
    }
    const seconds = (performance.now() - started) / 1000;
    $("status").textContent += `, ${seconds.toFixed(1)} s`;
  } catch (e) {
    $("status").textContent = e.name === "AbortError" ? "stopped" : "error: " + e.message;
  } finally {
    $("generate").disabled = false;
    $("stop").disabled = true;
    controller = null;
  }
}

function tokenText(byte) {
  if (byte === 10) return "\\n";
  if (byte === 32) return "space";
  return byte < 128 ? String.fromCharCode(byte) : "0x" + byte.toString(16);
}

function showActivity(a) {
  $("activity").dataset.tokens = String(a.index + 1);
  $("current-token").textContent = tokenText(a.token);
  $("token-count").textContent = `#${a.index + 1} of the reply`;
  const density = $("density");
  density.replaceChildren(...a.density_xs.map((xs, layer) => densityRow(layer, xs, a.density_ys[layer])));
  const rows = a.top_neurons.map(n => {
    const tr = document.createElement("tr");
    for (const v of [n.layer, n.head, n.neuron, n.value.toFixed(3)]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    return tr;
  });
  $("neurons").tBodies[0].replaceChildren(...rows);
  if (a.synapses) drawHeatmaps(a.synapses);
}

function densityRow(layer, xs, ys) {
  const row = document.createElement("div");
  row.className = "layer";
  row.innerHTML = `<span>layer ${layer}</span><span>xs</span><div class="bar xs"><div style="width:${(100 * xs).toFixed(1)}%"></div></div><span>${(100 * xs).toFixed(1)}%</span>` +
                  `<span></span><span>ys</span><div class="bar ys"><div style="width:${(100 * ys).toFixed(1)}%"></div></div><span>${(100 * ys).toFixed(1)}%</span>`;
  return row;
}

function drawHeatmaps(maps) {
  const box = $("heatmaps");
  const scale = 5;
  for (const map of maps) {
    let canvas = document.getElementById("rho-" + map.layer);
    if (!canvas) {
      const figure = document.createElement("figure");
      canvas = document.createElement("canvas");
      canvas.id = "rho-" + map.layer;
      canvas.width = map.columns * scale;
      canvas.height = map.rows * scale;
      const caption = document.createElement("figcaption");
      caption.textContent = "layer " + map.layer;
      figure.append(canvas, caption);
      box.appendChild(figure);
    }
    const max = Math.max(...map.cells);
    canvas.dataset.max = String(max);
    const context = canvas.getContext("2d");
    for (let r = 0; r < map.rows; r++)
      for (let c = 0; c < map.columns; c++) {
        const v = map.cells[r * map.columns + c];
        // linear in |rho|, the layer's strongest block brightest
        const t = max > 0 ? v / max : 0;
        context.fillStyle = `hsl(${260 - 220 * t}, 80%, ${8 + 55 * t}%)`;
        context.fillRect(c * scale, r * scale, scale, scale);
      }
  }
}

$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => controller && controller.abort());
$("api-key").addEventListener("change", showModel);
showModel();
