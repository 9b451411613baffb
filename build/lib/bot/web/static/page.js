// The poem page: options from /api/styles, the poem streamed from POST /api/poems.
// Everything the user or a link typed is shown with textContent, never parsed as HTML.
"use strict";

const WORDS = {
  en: {
    title: "poembot", style: "Style", form: "Form",
    acrostic: "Acrostic (each line starts with one character)", script: "Script",
    about: "About (a few words the poem is about)", aboutShown: "about",
    "as-trained": "as the model writes", prompt: "Prompt (the poem's beginning)",
    length: "Length", temperature: "Temperature", seed: "Seed", write: "Write",
    writing: "writing…", again: "Again", continue: "Continue", link: "Link to this poem",
    "default-form": "the style's own", unknown: "Not in this style's alphabet (left out): ",
    relaxed: "Rules bent to finish it: ", cut: "Cut at the length, at its last whole line.",
    loss: "validation loss", nats: "nats/char", guard: "copy guard: no run of",
    chars: "characters from its training text", offline: "The server did not answer.",
    temperatureShown: "temperature", seedShown: "seed", other: "中文",
  },
  zh: {
    title: "诗机", style: "风格", form: "诗体", acrostic: "藏头（每行以一字开头）", script: "字体",
    about: "主题（诗写什么，几个词）", aboutShown: "主题",
    "as-trained": "按模型原样", prompt: "开头（诗的起句）", length: "长度", temperature: "温度",
    seed: "种子", write: "写诗", writing: "正在写…", again: "再来一首", continue: "续写",
    link: "此诗链接", "default-form": "该风格默认", unknown: "本风格不认识的字（已略去）：",
    relaxed: "为写完而放宽的规则：", cut: "达到长度上限，截于最后完整的一行。", loss: "验证损失",
    nats: "nats/字", guard: "防抄：绝不连续照搬训练文本", chars: "个字",
    offline: "服务器没有回应。", temperatureShown: "温度", seedShown: "种子", other: "English",
  },
};

const state = { styles: [], limits: {}, language: "en", last: null, writing: null };
const $ = (id) => document.getElementById(id);

function t(key) {
  return (WORDS[state.language] || WORDS.en)[key] || WORDS.en[key] || key;
}

function applyLanguage() {
  document.documentElement.lang = state.language === "zh" ? "zh" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("language").textContent = t("other");
  renderStyle();
}

function style() {
  return state.styles.find((s) => s.name === $("style").value) || state.styles[0];
}

function renderStyle() {
  const s = style();
  if (!s) return;
  const form = $("form");
  const keep = form.value;
  form.replaceChildren();
  const first = document.createElement("option");
  first.value = "";
  first.textContent = s.default_form ? `${t("default-form")}` : "—";
  form.append(first);
  for (const f of s.forms) {
    const option = document.createElement("option");
    option.value = f.name;
    option.textContent = f.label;
    form.append(option);
  }
  form.value = s.forms.some((f) => f.name === keep) ? keep : "";
  $("form-row").hidden = s.forms.length === 0;
  $("acrostic-row").hidden = s.forms.length === 0;
  $("script-row").hidden = s.scripts.length === 0;
  $("about-row").hidden = !s.about;
  const parts = [`${s.display_name} · ${s.version} · ${s.card.model}`];
  if (s.card.val_loss != null) parts.push(`${t("loss")} ${s.card.val_loss.toFixed(3)} ${t("nats")}`);
  if (s.copy_guard) parts.push(`${t("guard")} ${s.copy_guard} ${t("chars")}`);
  $("card-text").textContent = parts.join(" · ");
  $("card-sample").textContent = s.sample || "";
  const curve = $("curve");
  if (s.loss_curve) {
    curve.src = s.loss_curve;
    curve.alt = `${s.display_name} loss curve`;
    curve.hidden = false;
  } else {
    curve.hidden = true;
    curve.removeAttribute("src");
  }
}

function clearErrors() {
  for (const el of document.querySelectorAll(".error")) el.textContent = "";
}

function showError(message, field) {
  const target = document.querySelector(`.error[data-for="${field || ""}"]`) || $("general-error");
  target.textContent = message;
}

function options(overrides = {}) {
  const out = { style: $("style").value };
  for (const name of ["form", "acrostic", "script", "prompt", "about"]) {
    if (name === "about" && $("about-row").hidden) continue;
    const value = $(name).value;
    if (value !== "") out[name] = value;
  }
  for (const name of ["length", "seed"]) {
    const value = $(name).value.trim();
    if (value !== "") out[name] = Number.isInteger(Number(value)) ? Number(value) : value;
  }
  const temperature = $("temperature").value.trim();
  if (temperature !== "") out.temperature = Number(temperature);
  return Object.assign(out, overrides);
}

function permalink(opts) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(opts)) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  return `/?${params.toString()}`;
}

async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      onEvent(name, data ? JSON.parse(data) : {});
    }
  }
}

async function write(overrides = {}, keep = "") {
  if (state.writing) state.writing.abort();
  const controller = new AbortController();
  state.writing = controller;
  clearErrors();
  const opts = options(overrides);
  $("write").disabled = true;
  $("result").hidden = false;
  $("footer").hidden = true;
  $("notes").textContent = "";
  $("writing").hidden = false;
  const poem = $("poem");
  poem.textContent = keep;
  try {
    const response = await fetch("/api/poems", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(opts),
      signal: controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      $("result").hidden = !keep;
      showError(body.error || `${response.status}`, body.field);
      return;
    }
    await readEvents(response, (name, data) => {
      if (name === "chunk") poem.textContent += data.text;
      else if (name === "error") showError(data.error, null);
      else if (name === "poem") finish(data, keep, opts);
    });
  } catch (err) {
    if (err.name !== "AbortError") showError(t("offline"), null);
  } finally {
    if (state.writing === controller) {
      state.writing = null;
      $("write").disabled = false;
      $("writing").hidden = true;
    }
  }
}

function finish(data, keep, opts) {
  $("poem").textContent = keep + data.text;
  state.last = { data, text: keep + data.text, opts };
  const meta = [`${data.style} ${data.version}`];
  if (data.form) meta.push(data.form);
  if (data.script) meta.push(data.script);
  meta.push(`${t("temperatureShown")} ${data.temperature}`, `${t("seedShown")} ${data.seed}`);
  $("meta").textContent = meta.join(" · ");
  const theme = $("theme");
  theme.hidden = !data.about;
  theme.textContent = data.about
    ? `${t("aboutShown")} ${data.about.theme}: ${data.about.plan.join(" · ")}`
    : "";
  const notes = [];
  if (data.unknown.length) notes.push(t("unknown") + data.unknown.join(" "));
  if (data.relaxed.length) notes.push(t("relaxed") + data.relaxed.join("; "));
  if (!data.whole && data.form) notes.push(t("cut"));
  $("notes").textContent = notes.join("\n");
  const link = Object.assign({}, data.options);
  $("permalink").href = permalink(link);
  $("footer").hidden = false;
  document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
}

function fill(params) {
  for (const name of ["style", "form", "acrostic", "script", "about", "prompt", "length", "temperature", "seed"]) {
    const value = params.get(name);
    if (value === null) continue;
    if (name === "style") {
      if (state.styles.some((s) => s.name === value)) $("style").value = value;
      renderStyle();
    } else if (name === "form" || name === "script") {
      const select = $(name);
      if ([...select.options].some((o) => o.value === value)) select.value = value;
    } else {
      $(name).value = value;
    }
  }
}

async function start() {
  const saved = localStorage.getItem("poembot-language");
  state.language = saved || ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");
  $("language").addEventListener("click", () => {
    state.language = state.language === "zh" ? "en" : "zh";
    localStorage.setItem("poembot-language", state.language);
    applyLanguage();
  });
  let body;
  try {
    body = await (await fetch("/api/styles")).json();
  } catch (err) {
    showError(t("offline"), null);
    return;
  }
  state.styles = body.styles;
  state.limits = body.limits;
  const select = $("style");
  for (const s of state.styles) {
    const option = document.createElement("option");
    option.value = s.name;
    option.textContent = s.display_name === s.name ? s.name : `${s.display_name} (${s.name})`;
    select.append(option);
  }
  if (body.default_style) select.value = body.default_style;
  $("length").max = body.limits.max_length;
  $("prompt").maxLength = body.limits.max_prompt;
  $("acrostic").maxLength = body.limits.max_acrostic;
  $("about").maxLength = body.limits.max_about;
  $("temperature").placeholder = String(body.limits.default_temperature);
  select.addEventListener("change", renderStyle);
  applyLanguage();
  const params = new URLSearchParams(location.search);
  fill(params);
  $("options").addEventListener("submit", (event) => {
    event.preventDefault();
    write();
  });
  // Again and Continue keep the poem's theme, typed or chosen by the bot (as on Discord).
  const theme = () =>
    state.last && state.last.data.about ? { about: state.last.data.about.theme } : {};
  $("again").addEventListener("click", () => {
    $("seed").value = "";
    write(theme());
  });
  $("continue").addEventListener("click", () => {
    if (!state.last) return;
    const more = { context: state.last.text.slice(-1000), prompt: undefined, ...theme() };
    write(more, state.last.text + "\n");
  });
  document.body.dataset.ready = "1";
  if (params.has("seed")) write();
}

document.addEventListener("DOMContentLoaded", start);
