/*
 * The Runnel console's pages, in plain JavaScript (no framework, no build step).
 *
 * Routing is on the URL's fragment, so every page has an address that can be bookmarked
 * and reloaded, and the server serves one HTML file:
 *
 *   #/                          the cluster: brokers, controller, health
 *   #/topics                    every topic, and the create-topic form
 *   #/topics/NAME               one topic's partitions and configs (with the edit form)
 *   #/topics/NAME/messages?...  the message browser; the query is the form's fields
 *   #/groups                    every consumer group with its lag
 *   #/groups/ID                 one group's members, offsets, lag, and lag over time
 *   #/connect                   Kafka Connect's connectors (when the broker knows a worker)
 *
 * Every page reads the JSON API under /console/api and draws itself with DOM calls; data
 * from the cluster is only ever set as text (never as HTML), since a record's key or value
 * can hold anything. Elements a test drives carry a stable `data-testid`; each page adds a
 * hidden `<name>-loaded` marker once its data is drawn, which tests and the load-time
 * script wait for.
 */
"use strict";

const API = "/console/api/";
/** How often the group page refreshes (each refresh is one sample of the lag chart). */
const GROUP_REFRESH_MS = 5000;

// ---------------------------------------------------------------------------------------
// Small helpers

/**
 * Builds an element: `h("a", {href: "#/", testid: "x", onclick: f}, "text", child, ...)`.
 * Strings become text nodes; null, undefined and false children are skipped; arrays are
 * flattened.
 */
function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "testid") element.dataset.testid = value;
    else if (name === "class") element.className = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "value") element.value = value;
    else if (name === "checked") element.checked = Boolean(value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

/** Replaces what `parent` holds with `children` (nested arrays and nulls as `h` takes them). */
function fill(parent, children) {
  parent.replaceChildren();
  append(parent, [children]);
}

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
}

/** The API's answer to `path`, or an Error with the server's message. */
async function api(path, options) {
  const init = Object.assign({ headers: {} }, options || {});
  if (init.body !== undefined && typeof init.body !== "string") {
    init.body = JSON.stringify(init.body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (error) {
    throw new Error(`the console did not answer: ${error.message}`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // An answer that is not JSON (a proxy's error page): the status says enough.
  }
  if (!response.ok) {
    const message = body && body.error ? body.error : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

const enc = encodeURIComponent;

function number(value) {
  if (value === null || value === undefined) return "?";
  return Number(value).toLocaleString("en-US");
}

/** `1 topic`, `2 topics`. */
function count(n, word) {
  return `${number(n)} ${word}${n === 1 ? "" : "s"}`;
}

function bytes(value) {
  if (value === null || value === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = Number(value);
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${size} B` : `${size.toFixed(1)} ${units[unit]}`;
}

function time(ms) {
  if (ms === null || ms === undefined || ms < 0) return "?";
  try {
    return new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC");
  } catch (_) {
    return String(ms);
  }
}

function badge(text, tone) {
  return h("span", { class: `badge ${tone || ""}` }, text);
}

function errorBox(error) {
  return h("div", { class: "error", testid: "error", role: "alert" }, String(error.message || error));
}

function loaded(name) {
  return h("span", { testid: `${name}-loaded`, hidden: true });
}

function table(testid, headers, rows) {
  return h(
    "table",
    { testid },
    h("thead", {}, h("tr", {}, headers.map((header) =>
      typeof header === "string" ? h("th", {}, header) : h("th", { class: header.class }, header.text)))),
    h("tbody", {}, rows),
  );
}

function card(label, value, testid) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value", testid }, value));
}

// ---------------------------------------------------------------------------------------
// Routing

/** The page being shown: its number, and the timers it started (stopped when it is left). */
const page = { token: 0, timers: [] };

function route() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const at = raw.indexOf("?");
  const path = at < 0 ? raw : raw.slice(0, at);
  const query = new URLSearchParams(at < 0 ? "" : raw.slice(at + 1));
  let segments;
  try {
    segments = path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch (_) {
    segments = ["?"];
  }
  return { segments, query };
}

async function show() {
  page.token += 1;
  for (const timer of page.timers) clearInterval(timer);
  page.timers = [];
  const token = page.token;
  const ctx = {
    alive: () => page.token === token,
    every: (ms, work) => page.timers.push(setInterval(work, ms)),
  };
  const { segments, query } = route();
  const main = document.getElementById("main");
  let section = "overview";
  let draw;
  if (segments.length === 0) draw = () => overviewPage(ctx);
  else if (segments[0] === "topics" && segments.length === 1) [section, draw] = ["topics", () => topicsPage(ctx)];
  else if (segments[0] === "topics" && segments.length === 2) [section, draw] = ["topics", () => topicPage(ctx, segments[1])];
  else if (segments[0] === "topics" && segments.length === 3 && segments[2] === "messages") {
    [section, draw] = ["topics", () => messagesPage(ctx, segments[1], query)];
  } else if (segments[0] === "groups" && segments.length === 1) [section, draw] = ["groups", () => groupsPage(ctx)];
  else if (segments[0] === "groups" && segments.length === 2) [section, draw] = ["groups", () => groupPage(ctx, segments[1])];
  else if (segments[0] === "connect" && segments.length === 1) [section, draw] = ["connect", () => connectPage(ctx)];
  else draw = async () => [h("h1", {}, "Not found"), h("p", {}, "No page at this address. "), h("a", { href: "#/" }, "The cluster")];
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("current", link.dataset.section === section);
  }
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  let content;
  try {
    content = await draw();
  } catch (error) {
    content = [errorBox(error)];
  }
  if (ctx.alive()) fill(main, content);
}

// ---------------------------------------------------------------------------------------
// The cluster

async function overviewPage() {
  const overview = await api("overview");
  const health = overview.health;
  const healthBadge = health.healthy ? badge("healthy", "ok") : badge("unhealthy", "bad");
  const problems = [];
  if (health.unhealthy_reasons.includes("no_controller")) problems.push(h("li", {}, "No active controller."));
  if (health.nodes_down.length) problems.push(h("li", {}, `Brokers down: ${health.nodes_down.join(", ")}.`));
  const partitionList = (list) => list.map((p) => `${p.topic}/${p.partition}`).join(", ");
  if (health.leaderless_count) {
    problems.push(h("li", {}, `${number(health.leaderless_count)} partitions without a leader: ${partitionList(health.leaderless)}`,
      health.leaderless_count > health.leaderless.length ? " …" : ""));
  }
  if (health.under_replicated_count) {
    problems.push(h("li", {}, `${number(health.under_replicated_count)} under-replicated partitions: ${partitionList(health.under_replicated)}`,
      health.under_replicated_count > health.under_replicated.length ? " …" : ""));
  }
  return [
    h("h1", {}, "Cluster"),
    h("p", { class: "muted" }, "Cluster id ", h("span", { class: "mono", testid: "cluster-id" }, overview.cluster_id || "?")),
    h("div", { class: "cards" },
      h("div", { class: "card" }, h("div", { class: "label" }, "Health"), h("div", { class: "value", testid: "health-status" }, healthBadge)),
      card("Controller", overview.controller_id === null ? "none" : String(overview.controller_id), "controller-id"),
      card("Brokers", number(overview.brokers.length), "broker-count"),
      card("Topics", number(overview.topics), "topic-count"),
      card("Partitions", number(overview.partitions), "partition-count"),
      card("Leaderless", number(health.leaderless_count), "health-leaderless"),
      card("Under-replicated", number(health.under_replicated_count), "health-under-replicated"),
      card("Brokers down", number(health.nodes_down.length), "health-nodes-down"),
      card("Consumer groups", overview.groups === null ? "?" : number(overview.groups), "group-count"),
    ),
    problems.length ? h("div", { class: "panel", testid: "health-problems" }, h("ul", {}, problems)) : null,
    h("h2", {}, "Brokers"),
    table("brokers-table", ["Node id", "Address", "Rack", "Role"], overview.brokers.map((broker) =>
      h("tr", { testid: "broker-row", "data-node": broker.id },
        h("td", {}, String(broker.id)),
        h("td", { class: "mono" }, broker.address),
        h("td", {}, broker.rack || h("span", { class: "muted" }, "none")),
        h("td", {}, broker.controller ? badge("controller", "ok") : ""),
      ))),
    loaded("overview"),
  ];
}

// ---------------------------------------------------------------------------------------
// Topics

async function topicsPage(ctx) {
  const showInternal = route().query.get("internal") === "true";
  const topics = await api(`topics?internal=${showInternal}`);
  const filter = h("input", { type: "search", placeholder: "Filter by name", testid: "topics-filter" });
  const rows = topics.map((topic) =>
    h("tr", { testid: "topic-row", "data-topic": topic.name },
      h("td", {}, h("a", { href: `#/topics/${enc(topic.name)}`, testid: "topic-link" }, topic.name),
        topic.internal ? [" ", badge("internal")] : null),
      h("td", { class: "num" }, number(topic.partitions)),
      h("td", { class: "num" }, number(topic.replication_factor)),
      h("td", { class: "num" }, topic.under_replicated ? badge(number(topic.under_replicated), "warn") : "0"),
      h("td", { class: "num" }, number(topic.records)),
      h("td", { class: "num" }, bytes(topic.size_bytes)),
    ));
  filter.addEventListener("input", () => {
    const wanted = filter.value.trim().toLowerCase();
    for (const row of rows) row.hidden = wanted !== "" && !row.dataset.topic.toLowerCase().includes(wanted);
  });
  const internal = h("input", { type: "checkbox", testid: "topics-internal", checked: showInternal });
  internal.addEventListener("change", () => {
    location.hash = internal.checked ? "#/topics?internal=true" : "#/topics";
  });
  return [
    h("h1", {}, "Topics"),
    createTopicForm(ctx),
    h("div", { class: "toolbar" }, filter, h("label", {}, internal, " internal topics"),
      h("span", { class: "spacer" }), h("span", { class: "muted", testid: "topics-count" }, count(topics.length, "topic"))),
    table("topics-table", ["Name", { text: "Partitions", class: "num" }, { text: "Replication", class: "num" },
      { text: "Under-replicated", class: "num" }, { text: "Records", class: "num" }, { text: "Size", class: "num" }], rows),
    loaded("topics"),
  ];
}

/** `name=value` lines into an object; an Error naming the line that is not one. */
function parseConfigLines(text) {
  const configs = {};
  text.split("\n").forEach((line, index) => {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) return;
    const at = trimmed.indexOf("=");
    if (at <= 0) throw new Error(`line ${index + 1} is not name=value: ${trimmed}`);
    configs[trimmed.slice(0, at).trim()] = trimmed.slice(at + 1).trim();
  });
  return configs;
}

function createTopicForm(ctx) {
  const name = h("input", { name: "name", required: true, testid: "create-topic-name", placeholder: "orders" });
  const partitions = h("input", { name: "partitions", type: "number", min: 1, value: "1", testid: "create-topic-partitions", class: "w7" });
  const replication = h("input", { name: "replication", type: "number", min: 1, placeholder: "default", testid: "create-topic-replication", class: "w7" });
  const configs = h("textarea", { rows: 2, cols: 36, placeholder: "retention.ms=86400000", testid: "create-topic-configs" });
  const result = h("div", { testid: "create-topic-result" });
  const submit = h("button", { type: "submit", testid: "create-topic-submit" }, "Create topic");
  const form = h("form", { class: "inline", testid: "create-topic-form" },
    h("label", {}, "Name", name),
    h("label", {}, "Partitions", partitions),
    h("label", {}, "Replication factor", replication),
    h("label", {}, "Configs (name=value per line)", configs),
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    result.replaceChildren();
    try {
      const body = {
        name: name.value.trim(),
        partitions: Number(partitions.value),
        configs: parseConfigLines(configs.value),
      };
      if (replication.value.trim() !== "") body.replication_factor = Number(replication.value);
      const created = await api("topics", { method: "POST", body });
      result.replaceChildren(h("div", { class: "notice", testid: "create-topic-created" }, "Created ",
        h("a", { href: `#/topics/${enc(created.name)}` }, created.name), "."));
      // The list below is drawn again with the new topic in it, the message kept.
      const list = await topicsPage(ctx);
      if (!ctx.alive()) return;
      const main = document.getElementById("main");
      fill(main, list);
      fill(main.querySelector('[data-testid="create-topic-result"]'), [...result.childNodes]);
    } catch (error) {
      result.replaceChildren(errorBox(error));
    } finally {
      submit.disabled = false;
    }
  });
  return h("details", { class: "panel", testid: "create-topic", open: true },
    h("summary", {}, "Create a topic"), form, result);
}

async function topicPage(ctx, name) {
  const [topic, configs] = await Promise.all([
    api(`topics/${enc(name)}`),
    api(`topics/${enc(name)}/configs`).catch((error) => error),
  ]);
  const partitions = table("partitions-table", [{ text: "Partition", class: "num" }, { text: "Leader", class: "num" },
    "Replicas", "In sync", { text: "Log start", class: "num" }, { text: "High watermark", class: "num" },
    { text: "Records", class: "num" }, { text: "Size", class: "num" }],
  topic.partitions.map((p) => {
    const lagging = p.isr.length < p.replicas.length;
    const records = p.high_watermark === null || p.log_start === null ? null : p.high_watermark - p.log_start;
    return h("tr", { testid: "partition-row", "data-partition": p.partition },
      h("td", { class: "num" }, String(p.partition)),
      h("td", { class: "num" }, p.leader < 0 ? badge("none", "bad") : String(p.leader)),
      h("td", {}, p.replicas.join(", ")),
      h("td", {}, lagging ? badge(p.isr.join(", ") || "none", "warn") : p.isr.join(", ")),
      h("td", { class: "num", testid: "partition-log-start" }, number(p.log_start)),
      h("td", { class: "num", testid: "partition-high-watermark" }, number(p.high_watermark)),
      h("td", { class: "num" }, number(records)),
      h("td", { class: "num" }, bytes(p.size_bytes)),
    );
  }));
  return [
    h("div", { class: "crumbs" }, h("a", { href: "#/topics" }, "Topics"), " /"),
    h("h1", { testid: "topic-name" }, topic.name, topic.internal ? [" ", badge("internal")] : null),
    h("div", { class: "cards" },
      card("Partitions", number(topic.partitions.length), "topic-partitions"),
      card("Records", number(topic.records), "topic-records"),
      card("Size", bytes(topic.size_bytes), "topic-size"),
    ),
    h("p", {}, h("a", { href: `#/topics/${enc(name)}/messages`, testid: "topic-browse-link" }, "Browse messages →")),
    h("h2", {}, "Partitions"),
    partitions,
    h("h2", {}, "Configs"),
    configs instanceof Error ? errorBox(configs) : configsEditor(name, configs),
    loaded("topic"),
  ];
}

/**
 * The configs table: every config with its value and source; values that may change are
 * inputs, saved together (IncrementalAlterConfigs applies all or none); an override can be
 * removed, which brings back the broker's default.
 */
function configsEditor(topic, configs) {
  const holder = h("div", { testid: "configs" });
  const draw = (entries, message) => {
    const inputs = [];
    const result = h("div", { testid: "config-result" }, message || null);
    const reset = async (name) => {
      try {
        draw(await api(`topics/${enc(topic)}/configs`, { method: "POST", body: { delete: [name] } }),
          h("div", { class: "notice" }, `${name} is back to its default.`));
      } catch (error) {
        result.replaceChildren(errorBox(error));
      }
    };
    const rows = entries.map((entry) => {
      const overridden = entry.source === "DynamicTopicConfig";
      let valueCell;
      if (entry.read_only || entry.is_sensitive) {
        valueCell = h("td", { class: "mono" }, entry.is_sensitive ? "(sensitive)" : entry.value ?? "");
      } else {
        const input = h("input", { class: "config-value", value: entry.value ?? "", testid: `config-input-${entry.name}`, "data-config": entry.name });
        input.dataset.original = entry.value ?? "";
        inputs.push(input);
        valueCell = h("td", {}, input);
      }
      return h("tr", { testid: "config-row", "data-config": entry.name, class: overridden ? "overridden" : "", title: entry.documentation || "" },
        h("td", { class: "config-name" }, entry.name),
        valueCell,
        h("td", {}, overridden ? badge("set on topic", "ok") : h("span", { class: "muted" }, entry.source)),
        h("td", {}, overridden
          ? h("button", { type: "button", class: "secondary", testid: `config-reset-${entry.name}`, onclick: () => reset(entry.name) }, "Reset")
          : ""),
      );
    });
    const save = h("button", { type: "button", testid: "config-save" }, "Save changes");
    save.addEventListener("click", async () => {
      const set = {};
      for (const input of inputs) {
        if (input.value !== input.dataset.original) set[input.dataset.config] = input.value;
      }
      if (Object.keys(set).length === 0) {
        result.replaceChildren(h("div", { class: "notice" }, "Nothing changed."));
        return;
      }
      save.disabled = true;
      try {
        draw(await api(`topics/${enc(topic)}/configs`, { method: "POST", body: { set } }),
          h("div", { class: "notice", testid: "config-saved" }, `Saved: ${Object.keys(set).join(", ")}.`));
      } catch (error) {
        result.replaceChildren(errorBox(error));
        save.disabled = false;
      }
    });
    holder.replaceChildren(
      h("div", { class: "toolbar" }, save, h("span", { class: "muted" }, "Changed values are saved together.")),
      result,
      table("configs-table", ["Name", "Value", "Source", ""], rows),
    );
  };
  draw(configs);
  return holder;
}

// ---------------------------------------------------------------------------------------
// The message browser

const BROWSE_FIELDS = ["partition", "mode", "offset", "timestamp", "key", "limit"];

/** A timestamp field: milliseconds since 1970, or a date the browser can read. */
function timestampMs(text) {
  const trimmed = text.trim();
  if (trimmed === "") return "";
  if (/^\d+$/.test(trimmed)) return trimmed;
  const parsed = Date.parse(trimmed);
  if (Number.isNaN(parsed)) throw new Error(`not a time: ${trimmed} (use milliseconds or 2024-05-01T12:00:00Z)`);
  return String(parsed);
}

function renderedValue(rendered, testid) {
  if (rendered.kind === "null") return h("span", { class: "null", testid, "data-kind": "null" }, "null");
  const size = rendered.truncated ? ` · ${number(rendered.size)} bytes, cut` : ` · ${number(rendered.size)} bytes`;
  return h("div", {},
    h("div", { class: "kind" }, rendered.kind, size),
    h("pre", { class: `value kind-${rendered.kind}`, testid, "data-kind": rendered.kind }, rendered.text));
}

async function messagesPage(ctx, name, query) {
  const topic = await api(`topics/${enc(name)}`);
  const field = (key, fallback) => query.get(key) ?? fallback;
  const partition = h("select", { testid: "msg-partition" },
    h("option", { value: "all" }, "all"),
    topic.partitions.map((p) => h("option", { value: String(p.partition) }, String(p.partition))));
  partition.value = field("partition", "all");
  const mode = h("select", { testid: "msg-mode" },
    h("option", { value: "newest" }, "newest"),
    h("option", { value: "oldest" }, "oldest"),
    h("option", { value: "offset" }, "from offset"),
    h("option", { value: "timestamp" }, "from time"));
  mode.value = field("mode", "newest");
  const offset = h("input", { type: "number", min: 0, value: field("offset", ""), testid: "msg-offset", class: "w9" });
  const timestamp = h("input", { value: field("timestamp", ""), placeholder: "ms or 2024-05-01T12:00Z", testid: "msg-timestamp", class: "w14" });
  const key = h("input", { value: field("key", ""), placeholder: "exact key", testid: "msg-key" });
  const limit = h("input", { type: "number", min: 1, max: 500, value: field("limit", "50"), testid: "msg-limit", class: "w6" });
  const formError = h("div", {});
  const form = h("form", { class: "inline panel", testid: "msg-form" },
    h("label", {}, "Partition", partition),
    h("label", {}, "Start", mode),
    h("label", {}, "Offset", offset),
    h("label", {}, "Time", timestamp),
    h("label", {}, "Key", key),
    h("label", {}, "Max records", limit),
    h("button", { type: "submit", testid: "msg-submit" }, "Browse"));
  const syncFields = () => {
    offset.disabled = mode.value !== "offset";
    timestamp.disabled = mode.value !== "timestamp";
  };
  mode.addEventListener("change", syncFields);
  syncFields();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    try {
      const values = {
        partition: partition.value,
        mode: mode.value,
        offset: mode.value === "offset" ? offset.value : "",
        timestamp: mode.value === "timestamp" ? timestampMs(timestamp.value) : "",
        key: key.value,
        limit: limit.value,
      };
      for (const name of BROWSE_FIELDS) if (values[name] !== "") params.set(name, values[name]);
    } catch (error) {
      formError.replaceChildren(errorBox(error));
      return;
    }
    // A new address: the browse can be reloaded and linked to. The same address again
    // (the same form twice) is read again too.
    const target = `#/topics/${enc(name)}/messages?${params}`;
    if (location.hash === target) show();
    else location.hash = target;
  });

  const asked = new URLSearchParams();
  for (const name of BROWSE_FIELDS) if (query.has(name)) asked.set(name, query.get(name));
  let results;
  try {
    const browsed = await api(`topics/${enc(name)}/messages?${asked}`);
    results = messagesTable(browsed);
  } catch (error) {
    results = errorBox(error);
  }
  return [
    h("div", { class: "crumbs" }, h("a", { href: "#/topics" }, "Topics"), " / ",
      h("a", { href: `#/topics/${enc(name)}` }, name), " /"),
    h("h1", {}, "Messages in ", h("span", { testid: "topic-name" }, name)),
    form,
    formError,
    results,
    loaded("messages"),
  ];
}

const STOPPED = {
  end: "read to the end",
  limit: "reached the record limit",
  max_bytes: "reached the byte limit",
  scan: "reached the scan limit of the key search",
  time: "ran out of time",
};

function messagesTable(browsed) {
  const rows = browsed.messages.map((m) =>
    h("tr", { testid: "message-row", "data-partition": m.partition, "data-offset": m.offset },
      h("td", { class: "num" }, String(m.partition)),
      h("td", { class: "num", testid: "message-offset" }, String(m.offset)),
      h("td", { class: "mono", title: m.timestamp_type }, time(m.timestamp)),
      h("td", {}, renderedValue(m.key, "message-key")),
      h("td", {}, renderedValue(m.value, "message-value")),
      h("td", { testid: "message-headers" }, m.headers.length === 0 ? h("span", { class: "muted" }, "none")
        : m.headers.map((header) => h("div", {}, h("span", { class: "mono" }, `${header.key}: `),
          header.value.kind === "null" ? h("span", { class: "null" }, "null") : h("span", { class: "mono" }, header.value.text)))),
    ));
  const ranges = browsed.partitions.map((p) => `${p.partition}: ${number(p.log_start)}–${number(p.high_watermark)}`).join(" · ");
  return [
    h("p", { class: "muted", testid: "messages-summary" },
      `${count(browsed.messages.length, "message")}, ${number(browsed.scanned)} read, ${bytes(browsed.bytes)}; ${STOPPED[browsed.stopped] || browsed.stopped}.`,
      h("br", {}), `Partitions (log start–end): ${ranges}`),
    rows.length === 0 ? h("p", { testid: "messages-empty" }, "No messages.") :
      table("messages-table", [{ text: "Partition", class: "num" }, { text: "Offset", class: "num" }, "Timestamp", "Key", "Value", "Headers"], rows),
  ];
}

// ---------------------------------------------------------------------------------------
// Consumer groups

function stateBadge(state) {
  if (!state) return badge("?");
  const tone = { Stable: "ok", Empty: "", Dead: "bad", PreparingRebalance: "warn", CompletingRebalance: "warn",
    Assigning: "warn", Reconciling: "warn" }[state];
  return badge(state, tone);
}

async function groupsPage() {
  const answer = await api("groups");
  const rows = answer.groups.map((g) =>
    h("tr", { testid: "group-row", "data-group": g.group_id },
      h("td", {}, h("a", { href: `#/groups/${enc(g.group_id)}`, testid: "group-link" }, g.group_id)),
      h("td", {}, stateBadge(g.state)),
      h("td", {}, g.group_type || g.protocol_type || ""),
      h("td", { class: "num" }, g.members === null ? "?" : number(g.members)),
      h("td", {}, g.topics.join(", ")),
      h("td", { class: "num" }, number(g.partitions)),
      h("td", { class: "num", testid: "group-lag" }, g.error ? h("span", { title: g.error }, "?") : number(g.lag)),
      h("td", { class: "num" }, String(g.coordinator)),
    ));
  return [
    h("h1", {}, "Consumer groups"),
    answer.warnings.map((warning) => errorBox(new Error(warning))),
    h("p", { class: "muted", testid: "groups-count" }, count(answer.groups.length, "group")),
    table("groups-table", ["Group", "State", "Type", { text: "Members", class: "num" }, "Topics",
      { text: "Partitions", class: "num" }, { text: "Lag", class: "num" }, { text: "Coordinator", class: "num" }], rows),
    loaded("groups"),
  ];
}

async function groupPage(ctx, id) {
  const holder = h("div", {});
  const draw = (group) => {
    holder.replaceChildren(
      h("div", { class: "cards" },
        h("div", { class: "card" }, h("div", { class: "label" }, "State"), h("div", { class: "value", testid: "group-state" }, stateBadge(group.state))),
        card("Total lag", number(group.lag), "group-lag-total"),
        card("Members", number(group.members.length), "group-member-count"),
        card("Coordinator", String(group.coordinator), "group-coordinator"),
        card("Protocol", `${group.group_type} ${group.protocol_type}${group.protocol ? ` / ${group.protocol}` : ""}`, "group-protocol"),
      ),
      h("h2", {}, "Lag over time"),
      lagChart(group.history),
      h("h2", {}, "Offsets"),
      group.offsets.length === 0 ? h("p", { class: "muted" }, "No committed offsets and no assignment.") :
        table("offsets-table", ["Topic", { text: "Partition", class: "num" }, { text: "Committed", class: "num" },
          { text: "Log end", class: "num" }, { text: "Lag", class: "num" }, "Member"], group.offsets.map((o) =>
          h("tr", { testid: "offset-row", "data-topic": o.topic, "data-partition": o.partition },
            h("td", {}, h("a", { href: `#/topics/${enc(o.topic)}` }, o.topic)),
            h("td", { class: "num" }, String(o.partition)),
            h("td", { class: "num", testid: "offset-committed" }, o.committed === null ? "none" : number(o.committed)),
            h("td", { class: "num", testid: "offset-log-end" }, number(o.log_end)),
            h("td", { class: "num", testid: "offset-lag" }, o.lag === null ? "?" : number(o.lag)),
            h("td", { class: "mono" }, o.client_id ? `${o.client_id} (${o.member_id})` : ""),
          ))),
      h("h2", {}, "Members"),
      group.members.length === 0 ? h("p", { class: "muted", testid: "members-empty" }, "No members.") :
        table("members-table", ["Member", "Client", "Host", "Assigned"], group.members.map((m) =>
          h("tr", { testid: "member-row" },
            h("td", { class: "mono" }, m.member_id, m.instance_id ? ` (static: ${m.instance_id})` : ""),
            h("td", {}, m.client_id),
            h("td", { class: "mono" }, m.host),
            h("td", {}, m.assignment_error ? h("span", { class: "muted" }, m.assignment_error)
              : m.assignment.map((a) => `${a.topic}: ${a.partitions.join(", ")}`).join("; ")),
          ))),
    );
  };
  draw(await api(`groups/${enc(id)}`));
  // While the page is open it polls: fresh numbers, and a sample of the lag chart each time.
  ctx.every(GROUP_REFRESH_MS, async () => {
    try {
      const group = await api(`groups/${enc(id)}`);
      if (ctx.alive()) draw(group);
    } catch (_) {
      // The next poll tries again; the page keeps what it has.
    }
  });
  return [
    h("div", { class: "crumbs" }, h("a", { href: "#/groups" }, "Consumer groups"), " /"),
    h("h1", { testid: "group-id" }, id),
    holder,
    loaded("group"),
  ];
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  for (const child of children) {
    if (typeof child === "string") element.appendChild(document.createTextNode(child));
    else if (child) element.appendChild(child);
  }
  return element;
}

/**
 * The group's total lag over time as a line. The samples are taken on the server each
 * time this page (or the groups list) loads the group, kept there in a small ring.
 */
function lagChart(history) {
  const box = h("div", { class: "chart", testid: "lag-chart", "data-samples": history.length });
  if (history.length === 0) {
    box.append(h("p", { class: "muted" }, "No samples yet."));
    return box;
  }
  const width = 1000;
  const height = 200;
  const pad = { left: 56, right: 12, top: 12, bottom: 22 };
  const first = history[0].at;
  const last = history[history.length - 1].at;
  const span = Math.max(last - first, 1);
  const top = Math.max(...history.map((s) => s.lag), 1);
  const x = (at) => pad.left + ((at - first) / span) * (width - pad.left - pad.right);
  const y = (lag) => pad.top + (1 - lag / top) * (height - pad.top - pad.bottom);
  const points = history.length === 1
    ? [[pad.left, y(history[0].lag)], [width - pad.right, y(history[0].lag)]]
    : history.map((s) => [x(s.at), y(s.lag)]);
  const line = points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" ");
  const base = height - pad.bottom;
  const area = `${points[0][0].toFixed(1)},${base} ${line} ${points[points.length - 1][0].toFixed(1)},${base}`;
  const clock = (ms) => new Date(ms).toISOString().slice(11, 19);
  box.append(svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "total lag over time" },
    svg("line", { class: "axis", x1: pad.left, y1: base, x2: width - pad.right, y2: base }),
    svg("line", { class: "axis", x1: pad.left, y1: pad.top, x2: pad.left, y2: base }),
    svg("polygon", { class: "area", points: area }),
    svg("polyline", { class: "line", points: line }),
    svg("text", { x: pad.left - 6, y: pad.top + 8, "text-anchor": "end" }, number(top)),
    svg("text", { x: pad.left - 6, y: base, "text-anchor": "end" }, "0"),
    svg("text", { x: pad.left, y: height - 4 }, `${clock(first)} UTC`),
    svg("text", { x: width - pad.right, y: height - 4, "text-anchor": "end" }, `${clock(last)} UTC`),
  ));
  box.append(h("div", { class: "muted" }, `${count(history.length, "sample")}, newest lag ${number(history[history.length - 1].lag)}`));
  return box;
}

// ---------------------------------------------------------------------------------------
// Connect

async function connectPage() {
  const connectors = await api("connect/connectors");
  const message = h("div", { testid: "connect-result" });
  const act = async (name, action) => {
    try {
      await api(`connect/connectors/${enc(name)}/${action}`, { method: "POST" });
      message.replaceChildren(h("div", { class: "notice" }, `${action}: ${name}`));
      setTimeout(() => { if (location.hash === "#/connect") show(); }, 500);
    } catch (error) {
      message.replaceChildren(errorBox(error));
    }
  };
  const tone = (state) => ({ RUNNING: "ok", PAUSED: "warn", STOPPED: "warn", FAILED: "bad", UNASSIGNED: "" }[state]);
  const rows = connectors.map((c) =>
    h("tr", { testid: "connector-row", "data-connector": c.name },
      h("td", {}, c.name),
      h("td", {}, c.type || "?"),
      h("td", { testid: "connector-state" }, badge(c.state, tone(c.state)), c.trace ? h("pre", {}, c.trace) : null),
      h("td", { class: "mono" }, c.worker_id || ""),
      h("td", {}, c.tasks.length === 0 ? h("span", { class: "muted" }, "none") : c.tasks.map((t) =>
        h("div", { title: t.trace || "" }, `${t.id}: `, badge(t.state, tone(t.state))))),
      h("td", {},
        h("button", { type: "button", class: "secondary", testid: "connector-pause", onclick: () => act(c.name, "pause") }, "Pause"), " ",
        h("button", { type: "button", class: "secondary", testid: "connector-resume", onclick: () => act(c.name, "resume") }, "Resume"), " ",
        h("button", { type: "button", class: "secondary", testid: "connector-restart", onclick: () => act(c.name, "restart") }, "Restart")),
    ));
  return [
    h("h1", {}, "Connect"),
    message,
    connectors.length === 0 ? h("p", { class: "muted", testid: "connectors-empty" }, "No connectors.") :
      table("connectors-table", ["Connector", "Type", "State", "Worker", "Tasks", ""], rows),
    loaded("connect"),
  ];
}

// ---------------------------------------------------------------------------------------
// Start

async function start() {
  try {
    const info = await api("info");
    document.querySelector('[data-testid="bootstrap"]').textContent = info.bootstrap;
    document.querySelector('[data-testid="nav-connect"]').hidden = !info.connect;
  } catch (_) {
    // The pages report the error themselves.
  }
  window.addEventListener("hashchange", show);
  show();
}

start();
