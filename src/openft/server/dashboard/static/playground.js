"use strict";
// The same messages to two models at once, each answer streamed into its pane as it is made:
// `fetch` with `stream: true`, reading the server-sent events from the response body.
const panes = ["a", "b"].map((name) => {
  const root = document.getElementById(`pane-${name}`);
  return { name, root, select: root.querySelector(".model"), output: root.querySelector(".output"), stats: root.querySelector(".stats") };
});

async function loadModels() {
  const models = (await api("/models")).data.map((m) => m.id);
  const query = new URLSearchParams(location.search);
  const tuned = models.filter((m) => m.startsWith("ft:") && !m.includes(":ckpt-step-"));
  const defaults = {
    a: query.get("a") || (models.includes("gpt-3.5-turbo") ? "gpt-3.5-turbo" : models[0]),
    b: query.get("b") || tuned[tuned.length - 1] || models[0],
  };
  for (const pane of panes) {
    pane.select.replaceChildren(...models.map((m) => el("option", { value: m, selected: m === defaults[pane.name] }, m)));
  }
}

async function stream(pane, messages, params) {
  pane.output.textContent = "";
  pane.root.classList.add("streaming");
  pane.root.classList.remove("done");
  pane.stats.textContent = "";
  const started = performance.now();
  let firstToken = null;
  let usage = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify({ model: pane.select.value, messages, stream: true, stream_options: { include_usage: true }, ...params }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new ApiError(response.status, body.error);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const frames = buffer.split("\n\n");
      buffer = frames.pop();  // an incomplete frame waits for the next read
      for (const frame of frames) {
        const data = frame.replace(/^data: /, "");
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new ApiError(500, chunk.error);
        if (chunk.usage) usage = chunk.usage;
        const text = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
        if (text) {
          if (firstToken === null) firstToken = performance.now();
          pane.output.textContent += text;
        }
      }
    }
    const seconds = (performance.now() - started) / 1000;
    pane.stats.textContent = [
      usage ? `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens` : "",
      firstToken ? `first token ${((firstToken - started) / 1000).toFixed(2)} s` : "",
      `${seconds.toFixed(2)} s`,
    ].filter(Boolean).join(" · ");
  } catch (error) {
    pane.stats.textContent = `Error: ${error.message}`;
    pane.stats.classList.add("error");
  } finally {
    pane.root.classList.remove("streaming");
    pane.root.classList.add("done");
  }
}

document.getElementById("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const system = document.getElementById("system").value.trim();
  const messages = [...(system ? [{ role: "system", content: system }] : []), { role: "user", content: document.getElementById("prompt").value }];
  const params = {
    max_tokens: Number(document.getElementById("max-tokens").value) || 128,
    temperature: Number(document.getElementById("temperature").value),
  };
  const send = document.getElementById("send");
  send.disabled = true;
  for (const pane of panes) pane.stats.classList.remove("error");
  await Promise.all(panes.map((pane) => stream(pane, messages, params)));
  send.disabled = false;
});

loadModels().catch(pageError);
