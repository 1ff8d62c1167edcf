// The ownrank demo page: plain JavaScript over the service's ordinary user routes.
// A visitor's id and token come from POST /demo/visitor (a fresh id, never one chosen
// here) and live in sessionStorage, so each browser tab is its own visitor. The device
// pane (at the end) is a second client of the same visitor; its tokens, copy and lease
// key live in this page's memory only.
"use strict";

const SESSION_KEY = "ownrank-demo-visitor";
const RECOMMENDATIONS = 8;
const CATALOG_ROWS = 24;
const PART_COLOURS = {
  personal: "#4c78a8",
  neighbours: "#59a14f",
  collaborative: "#e15759",
  popularity: "#f28e2b",
  recency: "#b07aa1",
  dislikes: "#9c2a1f",
};
const REASONS = {
  personal: (t) => (t ? `Close to your interest in “${t}”` : "Matches your taste"),
  neighbours: (t) => (t ? `Similar to “${t}”, which you liked` : "Similar to what you liked"),
  collaborative: (t) =>
    t ? `Readers who liked “${t}” also liked this` : "Readers with your likes liked this",
  popularity: () => "Popular with other readers",
  recency: () => "New in the catalog",
};

const state = {
  visitor: null, // {user_id, token, expires_at}
  topic: null,
  query: "",
  titles: new Map(), // item id -> title
  marks: new Map(), // item id -> "like" | "dislike" (the visitor's latest of the two)
  record: null,
  renders: 0, // actions finished (body[data-renders])
};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// -- the API ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, body, { auth = true, token = null } = {}) {
  const headers = {};
  if (auth) headers.Authorization = `Bearer ${token || state.visitor.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(
      response.status,
      data && data.code,
      (data && data.message) || response.statusText,
    );
  }
  return data;
}

const userPath = (suffix = "") => `/users/${encodeURIComponent(state.visitor.user_id)}${suffix}`;

// -- visitors --------------------------------------------------------------------------

function showVisitor() {
  $("visitor-id").textContent = state.visitor.user_id;
}

function restoreVisitor() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    if (saved && saved.token && Date.parse(saved.expires_at) > Date.now() + 60_000) {
      state.visitor = saved;
      showVisitor();
      return true;
    }
  } catch {
    // nothing usable saved
  }
  return false;
}

async function newVisitor() {
  state.visitor = await call("POST", "/demo/visitor", undefined, { auth: false });
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.visitor));
  state.marks = new Map();
  showVisitor();
}

// -- what the page does on a click -----------------------------------------------------

function notice(text, isError = false) {
  const box = $("notice");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = !text;
}

// every action runs through here: one at a time, "busy" while it runs, errors shown
let queue = Promise.resolve();
function run(action) {
  queue = queue.then(async () => {
    document.body.dataset.state = "busy";
    try {
      await action();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        try {
          await newVisitor();
          await refresh();
          notice("Your demo visitor expired: you are a new visitor now.", true);
        } catch (again) {
          notice(`Could not start a new visitor: ${again.message}`, true);
        }
      } else {
        notice(`Something went wrong: ${error.message}`, true);
      }
    } finally {
      // for tests and curious readers: how many actions have finished
      state.renders += 1;
      document.body.dataset.renders = String(state.renders);
      document.body.dataset.state = "ready";
    }
  });
  return queue;
}

async function feedback(itemId, kind) {
  const mark = state.marks.get(itemId);
  if (mark) {
    // one opinion per item: the earlier one is forgotten first (a second click on the
    // same button only forgets it)
    await call("POST", userPath("/forget"), { item_ids: [itemId] });
  }
  if (mark !== kind) {
    await call("POST", userPath("/interactions"), { events: [{ kind, item_id: itemId }] });
  }
  notice("");
  await refresh();
}

async function forget(itemId) {
  const report = await call("POST", userPath("/forget"), { item_ids: [itemId] });
  notice(
    `Forgot ${report.events_removed} event(s) about “${titleOf(itemId)}”: ` +
      `the model was refit without them, ${report.shared_units_subtracted} shared count(s) subtracted.`,
  );
  await refresh();
}

async function setConsent(shared) {
  await call("PUT", userPath("/consent"), { shared_statistics: shared });
  notice(shared ? "Your likes count in the shared statistics again." :
    "Consent withdrawn: your counts were subtracted from the shared statistics.");
  await refresh();
}

async function eraseMe() {
  const erased = state.visitor.user_id;
  const receipt = await call("DELETE", userPath());
  const keys = await call("GET", "/receipts/public-keys", undefined, { auth: false });
  const verdict = await verifyReceipt(receipt, keys.keys);
  const tampered = await verifyReceipt(
    { ...receipt, events_removed: receipt.events_removed + 1 }, keys.keys,
  );
  showReceipt(erased, receipt, verdict, tampered);
  sessionStorage.removeItem(SESSION_KEY);
  await newVisitor();
  notice(`${erased} was erased. You are a new visitor now, with cold-start results.`);
  await Promise.all([refresh(), loadCatalog()]);
  renderDevice(); // a device of the erased visitor learns it at its next sync
}

// -- receipts: Ed25519 over canonical JSON, checked in this browser --------------------

function canonical(value) {
  // as ownrank signs: sorted keys, no spaces, UTF-8 (engine/receipts.py)
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

async function verifyReceipt(receipt, publicKeys) {
  const body = { ...receipt };
  delete body.signature;
  const raw = publicKeys[receipt.key_id];
  if (!raw) return { valid: false, how: "its key is not one of this service's receipt keys" };
  try {
    const key = await crypto.subtle.importKey("raw", fromBase64(raw), { name: "Ed25519" }, false, [
      "verify",
    ]);
    const valid = await crypto.subtle.verify(
      { name: "Ed25519" },
      key,
      fromBase64(receipt.signature),
      new TextEncoder().encode(canonical(body)),
    );
    return {
      valid: valid && receipt.signature_algorithm === "ed25519",
      how: "in this browser (WebCrypto Ed25519)",
    };
  } catch {
    const check = await call("POST", "/demo/verify-receipt", receipt, { auth: false });
    return { valid: check.valid, how: "by the server (this browser lacks Ed25519 in WebCrypto)" };
  }
}

function showReceipt(erased, receipt, verdict, tampered) {
  const line = $("receipt-verdict");
  line.textContent = verdict.valid
    ? `Receipt for ${erased}: signature valid, verified ${verdict.how} with the ` +
      `service's public key ${receipt.key_id}.` +
      (tampered.valid ? "" : " A copy with one changed number fails the same check.")
    : `Receipt for ${erased}: the signature does NOT verify (${verdict.how}).`;
  line.className = verdict.valid ? "valid" : "invalid";
  const facts = $("receipt-facts");
  facts.replaceChildren();
  const shown = [
    ["erased at", receipt.erased_at],
    ["events removed", receipt.events_removed],
    ["shared counts subtracted", receipt.shared_units_subtracted],
    ["data key destroyed", receipt.data_key_destroyed ? "yes" : "no"],
    ["base model unchanged", receipt.model_fingerprint_unchanged ? "yes" : "no"],
    ["user key (HMAC, not your id)", receipt.user_key],
  ];
  for (const [label, value] of shown) facts.append(el("dt", { text: label }), el("dd", { text: String(value) }));
  $("receipt-json").textContent = JSON.stringify(receipt, null, 2);
  $("receipt").hidden = false;
}

// -- reading and drawing ---------------------------------------------------------------

function titleOf(itemId) {
  return state.titles.get(itemId) || itemId;
}

function remember(items) {
  for (const item of items) state.titles.set(item.id, item.title);
}

async function resolveTitles(ids) {
  const unknown = [...new Set(ids)].filter((id) => id && !state.titles.has(id));
  await Promise.all(
    unknown.map(async (id) => {
      try {
        remember([await call("GET", `/items/${encodeURIComponent(id)}`)]);
      } catch {
        state.titles.set(id, id); // deleted since: shown by id
      }
    }),
  );
}

function feedbackButtons(itemId) {
  const mark = state.marks.get(itemId);
  const button = (kind, label) =>
    el("button", {
      type: "button",
      class: kind,
      "data-item-id": itemId,
      "aria-pressed": String(mark === kind),
      title: mark === kind ? `Click again to take the ${kind} back` : `${label} this item`,
      text: mark === kind ? `${label}d` : label,
      onclick: () => run(() => feedback(itemId, kind)),
    });
  return el("div", { class: "actions" }, button("like", "Like"), button("dislike", "Dislike"));
}

function itemMeta(item) {
  const p = item.properties || {};
  const bits = [p.format, p.reading_minutes ? `${p.reading_minutes} min` : null, p.difficulty];
  return bits.filter(Boolean).join(" · ");
}

function renderCatalog(hits) {
  const list = $("catalog-list");
  list.replaceChildren();
  for (const hit of hits) {
    const item = hit.item;
    list.append(
      el(
        "li",
        { class: "item", "data-item-id": item.id },
        el(
          "div",
          { class: "row" },
          el("span", { class: "title", text: item.title }),
          el("span", { class: "topic", text: item.properties.topic || "" }),
        ),
        el("div", { class: "meta", text: itemMeta(item) }),
        feedbackButtons(item.id),
      ),
    );
  }
}

function explain(rec) {
  const e = rec.explanation;
  const text = REASONS[e.reason];
  const source = e.because_of ? titleOf(e.because_of) : null;
  return text ? text(source) : e.reason;
}

function partsOf(rec, scale) {
  const parts = Object.entries(rec.explanation.parts).filter(([, v]) => v !== 0);
  const bar = el("div", { class: "bar", "aria-hidden": "true" });
  const text = el("div", { class: "parts" });
  for (const [name, value] of parts) {
    const colour = PART_COLOURS[name] || "#888";
    if (value > 0) {
      bar.append(el("span", { style: { width: `${(100 * value) / scale}%`, background: colour } }));
    }
    text.append(
      el(
        "span",
        { class: `part${value < 0 ? " negative" : ""}`, "data-part": name },
        el("span", { class: "swatch", style: { background: colour } }),
        `${name} ${value.toFixed(3)}`,
      ),
    );
  }
  return [bar, text];
}

function renderForYou(recs, cold) {
  $("for-you-caption").textContent = cold
    ? "You have no history yet: these are the cold-start picks (popular, else recent). " +
      "Like a few items and watch them change."
    : "Updated after every click: each says why, and the bar shows the parts of its score.";
  const scale = Math.max(
    1e-9,
    ...recs.map((r) => Object.values(r.explanation.parts).reduce((s, v) => s + Math.max(v, 0), 0)),
  );
  const list = $("for-you-list");
  list.replaceChildren();
  for (const rec of recs) {
    list.append(
      el(
        "li",
        { class: "rec", "data-item-id": rec.item_id, "data-reason": rec.explanation.reason },
        el(
          "div",
          { class: "row" },
          el("span", { class: "title", text: rec.item.title }),
          el("span", { class: "topic", text: rec.item.properties.topic || "" }),
          el("span", { class: "score", text: rec.score.toFixed(3) }),
        ),
        el("div", { class: "explanation", text: explain(rec) }),
        ...partsOf(rec, scale),
        feedbackButtons(rec.item_id),
      ),
    );
  }
  const names = new Set(recs.flatMap((r) => Object.keys(r.explanation.parts)));
  $("legend").textContent = names.has("collaborative")
    ? "Parts: personal (your own model), neighbours (items like those you liked), " +
      "collaborative (what readers with the same likes liked), popularity, recency, dislikes."
    : "Parts: personal (your own model), neighbours (items like those you liked), popularity, " +
      "recency, dislikes.";
}

function kib(bytes) {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`;
}

function renderRecord(record) {
  const events = record.exists ? record.events : [];
  const facts = $("record-size");
  facts.replaceChildren();
  const rows = [["events retained", String(events.length)]];
  if (record.exists) {
    const model = record.model || {};
    const weights = (model.weights || []).length;
    const interests = (model.interests || []).length;
    const ledger = record.ledger || {};
    rows.push(
      ["your model", `${weights} weights, ${interests} interest(s)`],
      [
        "shared counts from you",
        `${(ledger.pop || []).length} liked item(s)` +
          (ledger.co ? `, ${(ledger.co || []).length} in "also liked" pairs` : ""),
      ],
      ["devices", `${(record.devices || []).length} registered`],
      ["record size", `${kib(new TextEncoder().encode(JSON.stringify(record)).length)} as JSON`],
      ["version", String(record.version)],
    );
  }
  for (const [label, value] of rows) facts.append(el("dt", { text: label }), el("dd", { text: value }));

  const list = $("event-list");
  list.replaceChildren();
  for (const event of [...events].reverse()) {
    const what = event.item_id ? titleOf(event.item_id) : `search “${event.query}”`;
    list.append(
      el(
        "li",
        { class: "event", "data-item-id": event.item_id || "" },
        el("span", { class: `kind ${event.kind}`, text: event.kind }),
        el("span", { class: "what", text: what }),
        el("span", { class: "meta", text: event.timestamp.replace("T", " ").replace("Z", "") }),
        event.item_id
          ? el("button", {
              type: "button",
              class: "forget",
              title: "Forget every event about this item",
              text: "Forget",
              onclick: () => run(() => forget(event.item_id)),
            })
          : null,
      ),
    );
  }
  $("no-events").hidden = events.length > 0;
  const consent = $("consent");
  consent.checked = record.exists ? Boolean(record.consent && record.consent.shared_statistics) : true;
  consent.disabled = !record.exists;
}

function marksOf(record) {
  const marks = new Map();
  for (const event of record.exists ? record.events : []) {
    if (event.kind === "like" || event.kind === "dislike") marks.set(event.item_id, event.kind);
  }
  return marks;
}

function refreshButtons() {
  for (const group of document.querySelectorAll(".actions")) {
    for (const button of group.querySelectorAll("button")) {
      const itemId = button.dataset.itemId;
      const kind = button.classList.contains("like") ? "like" : "dislike";
      const label = kind === "like" ? "Like" : "Dislike";
      const on = state.marks.get(itemId) === kind;
      button.setAttribute("aria-pressed", String(on));
      button.textContent = on ? `${label}d` : label;
    }
  }
}

// recommendations and the record, read again after every change
async function refresh() {
  const [recs, record] = await Promise.all([
    call("POST", userPath("/recommend"), { n: RECOMMENDATIONS, diversity: 0.2 }),
    call("GET", userPath("/export")),
  ]);
  state.record = record;
  state.marks = marksOf(record);
  remember(recs.results.map((r) => r.item));
  await resolveTitles([
    ...recs.results.map((r) => r.explanation.because_of),
    ...(record.exists ? record.events.map((e) => e.item_id) : []),
  ]);
  renderForYou(recs.results, !record.exists || record.events.length === 0);
  renderRecord(record);
  refreshButtons();
}

async function loadCatalog() {
  let body;
  let caption;
  if (state.query) {
    body = { query: state.query, n: CATALOG_ROWS };
    caption = `Results for “${state.query}”, re-ranked by your taste.`;
  } else {
    body = { query: state.topic, n: CATALOG_ROWS, filters: { topic: state.topic } };
    caption = `Topic: ${state.topic}.`;
  }
  const found = await call("POST", userPath("/search"), body);
  remember(found.results.map((h) => h.item));
  $("catalog-caption").textContent = caption;
  renderCatalog(found.results);
  for (const chip of $("topics").children) {
    chip.setAttribute("aria-pressed", String(!state.query && chip.dataset.topic === state.topic));
  }
}

async function loadTopics() {
  const catalog = await call("GET", "/demo/catalog", undefined, { auth: false });
  const chips = $("topics");
  chips.replaceChildren();
  for (const { topic, items } of catalog.topics) {
    chips.append(
      el("button", {
        type: "button",
        "data-topic": topic,
        title: `${items} items`,
        text: topic,
        onclick: () =>
          run(async () => {
            state.topic = topic;
            state.query = "";
            $("search-input").value = "";
            await loadCatalog();
          }),
      }),
    );
  }
  state.topic = catalog.topics.length ? catalog.topics[0].topic : "";
}

function download() {
  const blob = new Blob([JSON.stringify(state.record, null, 2)], { type: "application/json" });
  const link = el("a", { href: URL.createObjectURL(blob), download: `${state.visitor.user_id}.json` });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// -- another device: a synced copy of the visitor (docs/sync.md) -----------------------
// A small JavaScript reading of the device side of sdk/device_client.py: the device is
// registered with the visitor's token and then acts with its own tokens; it keeps the
// server's last copy of the record, the events it made offline and the ids it forgot
// offline, and sends them in one POST /users/{id}/sync. Everything here (tokens, copy,
// lease key) lives in this page's memory only: nothing is written to storage.

// the page does not compute the set's BLAKE2b checksum: after a change it sends this,
// so the server always answers with its copy (see docs/demo.md)
const PLACEHOLDER_CHECKSUM = "0000000000000000";
const DEVICE_LABEL = "demo pane";
const DEVICE_PAGE_SIZE = 1000;
const DEVICE_WIPES = {
  user_erased: "erased: this device wiped its copy",
  stale_generation: "a copy of an erased generation: this device wiped its copy",
  device_revoked: "revoked: this device wiped its copy",
};

let device = null; // the registered device, or null

function newUuid() {
  if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts (127.0.0.1, https)
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; // version 4
  b[8] = (b[8] & 0x3f) | 0x80; // variant 10
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function isoNow() {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z"); // whole seconds, as stored
}

const devicePath = (suffix = "") => `/users/${encodeURIComponent(device.userId)}${suffix}`;

async function deviceCall(method, path, body) {
  // with the device's access token, renewed once when it expired (POST /devices/refresh)
  try {
    return await call(method, path, body, { token: device.access });
  } catch (error) {
    if (!(error instanceof ApiError && error.code === "token_expired")) throw error;
    const pair = await call("POST", "/devices/refresh", { refresh_token: device.refresh }, {
      auth: false,
    });
    device.access = pair.access_token;
    device.refresh = pair.refresh_token;
    return call(method, path, body, { token: device.access });
  }
}

// the device's set: the server's last copy, less the forgets queued, plus the queue
function deviceRows() {
  const forgotten = new Set(device.forgotten);
  const server = device.record && device.record.exists ? device.record.events : [];
  const rows = server.map((event) => ({
    event,
    state: forgotten.has(event.id) ? "forgetting" : "synced",
  }));
  for (const event of device.pending) rows.push({ event, state: "queued" });
  return rows.sort((a, b) => a.event.timestamp.localeCompare(b.event.timestamp));
}

function deviceHeld() {
  return deviceRows().filter((row) => row.state !== "forgetting");
}

function deviceMark(itemId) {
  let mark = null;
  for (const { event } of deviceHeld()) {
    if (event.item_id === itemId && (event.kind === "like" || event.kind === "dislike")) {
      mark = event.kind;
    }
  }
  return mark;
}

function deviceTitle(itemId) {
  const item = device && device.byId.get(itemId);
  return item && item.title ? item.title : titleOf(itemId);
}

// -- offline: the queue ----------------------------------------------------------------

function deviceForgetItem(itemId) {
  device.pending = device.pending.filter((event) => event.item_id !== itemId);
  for (const { event, state } of deviceRows()) {
    if (state === "synced" && event.item_id === itemId) device.forgotten.push(event.id);
  }
}

function deviceFeedback(itemId, kind) {
  if (!device) return;
  // as the main page: one opinion per item, a second click takes it back
  const mark = deviceMark(itemId);
  if (mark) deviceForgetItem(itemId);
  if (mark !== kind) {
    device.pending.push({ id: newUuid(), kind, item_id: itemId, timestamp: isoNow() });
  }
  renderDevice();
}

function deviceForgetEvent(event, state) {
  if (!device) return;
  if (state === "queued") device.pending = device.pending.filter((e) => e.id !== event.id);
  else if (state === "forgetting") device.forgotten = device.forgotten.filter((id) => id !== event.id);
  else device.forgotten.push(event.id);
  renderDevice();
}

// -- online: register, sync, revoke ----------------------------------------------------

function deviceStatus(text, kind = "") {
  const line = $("device-status");
  line.textContent = text;
  line.className = kind;
  line.hidden = !text;
}

async function deviceAdd() {
  const userId = state.visitor.user_id;
  const registered = await call("POST", userPath("/devices"), { label: DEVICE_LABEL });
  device = {
    id: registered.device_id,
    userId,
    access: registered.access_token, // in memory only
    refresh: registered.refresh_token,
    revoked: false,
    rows: new Map(), // the catalog copy: row -> {id, title, topic}
    byId: new Map(),
    cursor: null,
    catalogSeq: null,
    topic: null,
    record: null, // the server's last copy (an export)
    generation: null, // null: never synced
    checksum: null, // the server's checksum of that copy
    pending: [], // events made offline
    forgotten: [], // ids of events forgotten offline
    lease: null, // {key, expires_at}: kept in memory, never stored or shown
    last: null,
  };
  $("device-pane").dataset.device = "active";
  deviceStatus(
    `Registered device ${registered.device_id} with your visitor token ` +
      `(POST /users/${userId}/devices); its first sync brings the server's copy.`,
  );
  if (await deviceSync()) await refresh(); // the record now lists the device
}

async function deviceSync() {
  const d = device;
  const held = deviceHeld().length;
  // nothing changed on the device since the server's copy: its checksum is the server's
  const unchanged = !d.pending.length && !d.forgotten.length && d.checksum !== null;
  const sent = {
    generation: d.generation,
    count: held,
    checksum: unchanged ? d.checksum : PLACEHOLDER_CHECKSUM,
    push: d.pending,
    forget: d.forgotten,
  };
  try {
    const answer = await deviceCall("POST", devicePath("/sync"), sent);
    if (answer.record) d.record = answer.record; // the server is authoritative
    else if (!answer.in_sync) d.record = null; // the server holds nothing of the user
    else if (d.record) d.record = { ...d.record, version: answer.version };
    d.generation = answer.generation;
    d.checksum = answer.checksum;
    d.pending = [];
    d.forgotten = [];
    if (answer.lease) d.lease = answer.lease;
    d.last = { answer, sent, at: new Date().toLocaleTimeString() };
    await syncDeviceCatalog();
  } catch (error) {
    deviceFailed(error);
    return false;
  }
  const { answer } = d.last;
  deviceStatus(
    `Synced: pushed ${sent.push.length} event(s) and ${sent.forget.length} forget(s); ` +
      (answer.in_sync
        ? "the device already held the server's set."
        : "the device adopted the server's copy."),
    "ok",
  );
  renderDevice();
  return true;
}

async function syncDeviceCatalog() {
  // GET /sync/catalog: a full copy the first time, then the changes since the cursor
  const d = device;
  let params = new URLSearchParams({ encoding: "i8", page_size: String(DEVICE_PAGE_SIZE) });
  if (d.cursor) params.set("since", d.cursor);
  for (;;) {
    const page = await deviceCall("GET", `/sync/catalog?${params}`);
    if (page.reset) d.rows.clear();
    for (const row of page.removed) d.rows.delete(row);
    for (const item of [...page.changed, ...page.items]) {
      const topic = (item.properties && item.properties.topic) || "other";
      d.rows.set(item.row, { id: item.id, title: item.title, topic });
    }
    d.catalogSeq = page.catalog_seq;
    if (!page.next) {
      d.cursor = page.cursor;
      break;
    }
    params = new URLSearchParams({ page: page.next });
  }
  d.byId = new Map([...d.rows.values()].map((item) => [item.id, item]));
}

function deviceFailed(error) {
  const code = error instanceof ApiError ? error.code : null;
  if (code && DEVICE_WIPES[code] && (error.status === 409 || error.status === 401)) {
    // the server says the copy must go: the copy, the queue, the tokens, the lease key
    device = null;
    $("device-pane").dataset.device = "wiped";
    deviceStatus(`${error.status} ${code}: ${DEVICE_WIPES[code]} (its events, its queue, ` +
      "its tokens and its lease key are gone from this page).", "wiped");
  } else {
    const why = error instanceof ApiError ? `${error.status} ${code || ""} ${error.message}` :
      error.message;
    deviceStatus(`The sync failed (${why.trim()}); the device keeps its copy and its queue.`,
      "error");
  }
  renderDevice();
}

async function deviceSyncAndRefresh() {
  if (!device) return;
  const mine = device.userId === state.visitor.user_id;
  // the main page reads its record again, as any other client of the visitor would
  if ((await deviceSync()) && mine) await refresh();
}

async function deviceRevoke() {
  const d = device;
  if (!d) return;
  const path = devicePath(`/devices/${d.id}`);
  const mine = d.userId === state.visitor.user_id;
  try {
    // as the visitor (a user revokes a lost phone); a device may also revoke itself
    await call("DELETE", path, undefined, mine ? {} : { token: d.access });
  } catch (error) {
    deviceStatus(`Revoke failed: ${error.status || ""} ${error.code || error.message}`, "error");
    return;
  }
  d.revoked = true;
  deviceStatus(
    `Revoked: DELETE ${path} answered 204. The device does not know yet; ` +
      "the server refuses its next sync, and then it wipes its copy.",
  );
  renderDevice();
  if (mine) await refresh();
}

// -- drawing the device ----------------------------------------------------------------

function renderDevice() {
  const d = device;
  $("device-add").hidden = Boolean(d);
  $("device-sync").hidden = !d;
  $("device-revoke").hidden = !d || d.revoked;
  $("device-body").hidden = !d;
  const who = $("device-who");
  who.replaceChildren();
  if (!d) {
    // no device, or a wiped one: nothing of its copy stays on the page
    for (const id of ["device-items", "device-events", "device-answer", "device-topic"]) {
      $(id).replaceChildren();
    }
    return;
  }
  who.append(
    "Device ",
    el("code", { id: "device-id", title: d.id, text: d.id.slice(0, 8) }),
    ` of ${d.userId}`,
    d.userId === state.visitor.user_id ? "" : " (no longer this tab's visitor)",
    d.revoked ? ", revoked on the server" : "",
  );
  renderDeviceCatalog();
  renderDeviceCopy();
  renderDeviceAnswer();
}

function renderDeviceCatalog() {
  const d = device;
  const topics = [...new Set([...d.rows.values()].map((item) => item.topic))].sort();
  if (!topics.includes(d.topic)) d.topic = topics.length ? topics[0] : null;
  const select = $("device-topic");
  select.replaceChildren(
    ...topics.map((t) => el("option", { value: t, text: t, ...(t === d.topic ? { selected: "" } : {}) })),
  );
  $("device-catalog-caption").textContent =
    `${d.rows.size} items in the device's catalog copy (GET /sync/catalog, catalog ` +
    `version ${d.catalogSeq}). Likes and dislikes here wait in the device's queue.`;
  const list = $("device-items");
  list.replaceChildren();
  for (const item of [...d.rows.values()].filter((i) => i.topic === d.topic)) {
    const mark = deviceMark(item.id);
    const button = (kind, label) =>
      el("button", {
        type: "button",
        class: kind,
        "aria-pressed": String(mark === kind),
        title: mark === kind ? `Click again to take the ${kind} back` : `${label} on this device`,
        text: mark === kind ? `${label}d` : label,
        onclick: () => run(() => deviceFeedback(item.id, kind)),
      });
    list.append(
      el(
        "li",
        { class: "item", "data-item-id": item.id },
        el("div", { class: "row" }, el("span", { class: "title", text: item.title || item.id })),
        el("div", { class: "device-actions" }, button("like", "Like"), button("dislike", "Dislike")),
      ),
    );
  }
}

function renderDeviceCopy() {
  const d = device;
  const rows = deviceRows();
  const count = (s) => rows.filter((row) => row.state === s).length;
  $("device-copy-caption").textContent = d.record === null && !rows.length
    ? "Empty: nothing synced yet."
    : `${rows.length - count("forgetting")} event(s): ${count("synced")} from the server's ` +
      `copy (version ${d.record ? d.record.version : 0}), ${count("queued")} queued offline, ` +
      `${count("forgetting")} forget(s) queued.`;
  const list = $("device-events");
  list.replaceChildren();
  const labels = { synced: "", queued: "queued", forgetting: "forget queued" };
  for (const { event, state: where } of [...rows].reverse()) {
    const what = event.item_id ? deviceTitle(event.item_id) : `search “${event.query}”`;
    list.append(
      el(
        "li",
        { class: `device-event ${where}`, "data-item-id": event.item_id || "", "data-state": where },
        el("span", { class: `kind ${event.kind}`, text: event.kind }),
        el("span", { class: "what", text: what }),
        el("span", { class: "meta", text: event.timestamp.replace("T", " ").replace("Z", "") }),
        labels[where] ? el("span", { class: "pending-tag", text: labels[where] }) : null,
        el("button", {
          type: "button",
          class: "forget",
          title: where === "forgetting" ? "Keep it after all" : "Forget this event on the device",
          text: where === "forgetting" ? "Undo" : "Forget",
          onclick: () => run(() => deviceForgetEvent(event, where)),
        }),
      ),
    );
  }
}

function renderDeviceAnswer() {
  const d = device;
  const facts = $("device-answer");
  facts.replaceChildren();
  if (!d.last) {
    $("device-sync-caption").textContent = "Not synced yet.";
    return;
  }
  const { answer, sent, at } = d.last;
  $("device-sync-caption").textContent =
    `${at}: POST /users/…/sync pushed ${sent.push.length} event(s) and ` +
    `${sent.forget.length} forget(s).`;
  const held = deviceHeld().length;
  const placeholder = sent.checksum === PLACEHOLDER_CHECKSUM;
  const rows = [
    ["accepted", String(answer.accepted)],
    ["duplicates", String(answer.duplicates)],
    ["forgotten", String(answer.forgotten)],
    ["server's count", String(answer.count)],
    ["server's checksum", answer.checksum],
    ["version, generation", `${answer.version}, ${answer.generation}`],
    [
      "in sync",
      answer.in_sync
        ? "yes: the device held the server's set, so no copy came back"
        : `no${placeholder ? " (the page sent a placeholder checksum)" : ""}: ` +
          "the device adopted the server's copy",
    ],
    [
      "device now holds",
      `${held} event(s)` + (held === answer.count && !d.pending.length && !d.forgotten.length
        ? ", the server's set"
        : ` (the server's ${answer.count}, and the queue since)`),
    ],
    ["lease", d.lease ? `until ${d.lease.expires_at} (key in page memory only)` : "none"],
  ];
  for (const [label, value] of rows) {
    facts.append(el("dt", { text: label }), el("dd", { text: value, "data-fact": label }));
  }
}

function wire() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = $("search-input").value.trim();
    run(async () => {
      state.query = query;
      await loadCatalog();
    });
  });
  $("consent").addEventListener("change", (event) => run(() => setConsent(event.target.checked)));
  $("download").addEventListener("click", download);
  $("erase").addEventListener("click", () => {
    $("erase-confirm").hidden = false;
  });
  $("erase-no").addEventListener("click", () => {
    $("erase-confirm").hidden = true;
  });
  $("erase-yes").addEventListener("click", () => {
    $("erase-confirm").hidden = true;
    run(eraseMe);
  });
  $("device-add").addEventListener("click", () => run(deviceAdd));
  $("device-sync").addEventListener("click", () => run(deviceSyncAndRefresh));
  $("device-revoke").addEventListener("click", () => run(deviceRevoke));
  $("device-topic").addEventListener("change", (event) =>
    run(() => {
      if (!device) return;
      device.topic = event.target.value;
      renderDevice();
    }),
  );
}

wire();
run(async () => {
  if (!restoreVisitor()) await newVisitor();
  await loadTopics();
  await Promise.all([loadCatalog(), refresh()]);
});
