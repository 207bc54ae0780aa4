// gongche browser console: a dependency-free single-page app over the REST API.
// Every piece of data reaches the page through textContent / createTextNode (see h()),
// never parsed as HTML, so user text cannot become markup.
import { t, tEnum, tReason, setLocale, getLocale, storedLocale } from "./i18n.js";

const TZ = "Asia/Shanghai"; // display zone; the API speaks UTC
const PURPOSES = ["research", "reception", "major_event", "law_enforcement", "emergency", "other"];
const URGENT_TAGS = ["防汛", "抗旱", "环保", "扶贫", "信访", "应急", "抢险", "救灾", "疫情防控"];
const CATEGORIES = ["general", "emergency", "law_enforcement", "special_technical",
  "confidential", "dedicated"];
const ENERGY = ["electric", "plug_in_hybrid", "hybrid", "petrol", "diesel", "fuel_cell"];
const STATUS_COLOUR = { moving: "#2e8b57", parked: "#1f5fa8", offline: "#95a5a6",
  on_booking: "#e67e22" };
const MENUS = [
  ["live", ["dispatcher", "supervisor", "admin"]],
  ["book", ["staff", "approver", "admin"]],
  ["dispatch", ["dispatcher", "admin"]],
  ["supervise", ["supervisor", "admin"]],
  ["ledger", ["dispatcher", "supervisor", "admin"]],
];

const S = {
  token: sessionStorage.getItem("gongche.token"),
  me: null, config: null, city: null,
  deps: new Map(), vehicles: new Map(), drivers: new Map(),
  cleanups: [],
};

// ---------------------------------------------------------------- DOM helpers (XSS-safe)
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = String(v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = Boolean(v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVGNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, text) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = String(text);
  return el;
}

function escapeHtml(str) { // only for Leaflet's attribution control, which takes HTML
  const d = document.createElement("div");
  d.textContent = String(str || "");
  return d.innerHTML;
}

function options(values, label, { any = null, selected = null } = {}) {
  const out = [];
  if (any !== null) out.push(h("option", { value: "", text: any }));
  for (const v of values) {
    const [val, text] = Array.isArray(v) ? v : [v, label ? label(v) : v];
    out.push(h("option", { value: val, text, selected: String(val) === String(selected) }));
  }
  return out;
}

function badge(cls, text) { return h("span", { class: `badge ${cls || ""}`, text }); }

function message(box, kind, text) {
  box.replaceChildren(text ? h("div", { class: `msg ${kind}`, role: "status", text }) : "");
}

function table(headers, rows, empty = t("common.empty")) {
  const body = rows.length ? rows : [h("tr", {}, h("td", { colspan: headers.length,
    class: "muted", text: empty }))];
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((x) => h("th", { text: x })))),
    h("tbody", {}, body));
}

function td(...c) { return h("td", {}, ...c); }

// ---------------------------------------------------------------- time
const FMT = new Intl.DateTimeFormat("sv-SE", { timeZone: TZ, year: "numeric", month: "2-digit",
  day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
function fmtTime(iso, seconds = false) {
  if (!iso) return "";
  const str = FMT.format(new Date(iso));
  return seconds ? str : str.slice(0, 16);
}
function localInput(date) { return FMT.format(date).replace(" ", "T").slice(0, 16); }
function toIso(local) { // datetime-local in Beijing time → ISO with offset
  if (!local) return "";
  return `${local.length === 16 ? `${local}:00` : local}+08:00`;
}
function today() { return FMT.format(new Date()).slice(0, 10); }
function addDays(day, n) {
  const d = new Date(`${day}T12:00:00+08:00`);
  d.setUTCDate(d.getUTCDate() + n);
  return FMT.format(d).slice(0, 10);
}
function dayStartIso(day) { return `${day}T00:00:00+08:00`; }
function window2(b) {
  const a = fmtTime(b.start_at); const e = fmtTime(b.end_at);
  return a.slice(0, 10) === e.slice(0, 10) ? `${a} – ${e.slice(11)}` : `${a} – ${e}`;
}
function yuan(fen) { return (Number(fen || 0) / 100).toLocaleString(getLocale(), { maximumFractionDigits: 2 }); }

// ---------------------------------------------------------------- API
async function api(method, path, { body, form, query } = {}) {
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined && v !== "") q.append(k, v);
    if ([...q].length) url += `?${q}`;
  }
  const headers = {};
  if (S.token) headers.Authorization = `Bearer ${S.token}`;
  let payload;
  if (form) payload = new URLSearchParams(form);
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  let res;
  try { res = await fetch(url, { method, headers, body: payload }); } catch (e) {
    return { ok: false, status: 0, data: { detail: String(e) } };
  }
  const ct = res.headers.get("content-type") || "";
  const data = ct.includes("json") ? await res.json().catch(() => null) : await res.text();
  if (res.status === 401 && path !== "/api/auth/token") { logout(); }
  return { ok: res.ok, status: res.status, data };
}

function errText(r) {
  if (r.status === 403) return `${t("common.forbidden")}: ${detailOf(r)}`;
  return detailOf(r) || `${t("common.error")} ${r.status}`;
}
function detailOf(r) {
  const d = r.data;
  if (!d) return "";
  if (typeof d === "string") return d.slice(0, 300);
  if (typeof d.detail === "string") return d.detail;
  if (Array.isArray(d.detail)) return d.detail.map((x) => x.msg || JSON.stringify(x)).join("; ");
  return "";
}

async function download(path, query, filename) {
  const q = new URLSearchParams(query || {});
  const res = await fetch(`${path}?${q}`, { headers: { Authorization: `Bearer ${S.token}` } });
  if (!res.ok) return { ok: false, status: res.status };
  const blob = await res.blob();
  const a = h("a", { href: URL.createObjectURL(blob), download: filename });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  return { ok: true, status: res.status };
}

async function pageAll(path, query = {}) {
  const r = await api("GET", path, { query: { limit: 500, ...query } });
  if (!r.ok) return [];
  return Array.isArray(r.data) ? r.data : r.data.items || [];
}

// ---------------------------------------------------------------- shared look-ups
const depName = (id) => S.deps.get(id)?.name ?? (id ? `#${id}` : "");
const plateOf = (id) => S.vehicles.get(id)?.plate ?? (id ? `#${id}` : "");
const driverName = (id) => S.drivers.get(id)?.name ?? (id ? `#${id}` : "");
const placesOfCity = () => (S.city?.features || []).filter((f) => f.properties.kind === "place");

async function loadReference() {
  const [deps, vehicles, drivers] = await Promise.all([
    pageAll("/api/departments"), pageAll("/api/vehicles"), pageAll("/api/drivers")]);
  S.deps = new Map(deps.map((d) => [d.id, d]));
  S.vehicles = new Map(vehicles.map((v) => [v.id, v]));
  S.drivers = new Map(drivers.map((d) => [d.id, d]));
}

// ---------------------------------------------------------------- map
function makeMap(el) {
  const c = S.config;
  const map = L.map(el, { preferCanvas: true }).setView(c.centre, c.zoom);
  if (c.tile_url) {
    L.tileLayer(c.tile_url, { maxZoom: 19, attribution: escapeHtml(c.tile_attribution) }).addTo(map);
  } else if (S.city) {
    L.geoJSON(S.city, {
      filter: (f) => f.properties.kind === "road",
      style: (f) => {
        const major = /arterial|primary|trunk|main|expressway/.test(String(f.properties.road_class));
        return { color: major ? "#8d9aab" : "#bcc5cf", weight: major ? 4 : 2, opacity: 0.9 };
      },
      interactive: false,
    }).addTo(map);
    for (const p of placesOfCity()) {
      const [lon, lat] = p.geometry.coordinates;
      L.circleMarker([lat, lon], { radius: 4, color: "#555", weight: 1, fillColor: "#fff",
        fillOpacity: 1, interactive: false })
        .bindTooltip(h("span", { text: p.properties.name }), { permanent: true,
          direction: "right", className: "place", offset: [4, 0] })
        .addTo(map);
    }
  }
  api("GET", "/api/geofences", { query: { circle_as_polygon: true } }).then((r) => {
    if (!r.ok || !r.data?.features?.length) return;
    L.geoJSON(r.data, {
      style: { color: "#d68910", weight: 2, dashArray: "6 4", fillOpacity: 0.06 },
      onEachFeature: (f, layer) => layer.bindTooltip(h("span", { text: f.properties?.name || "" })),
    }).addTo(map);
  });
  return map;
}

// ---------------------------------------------------------------- shell and routing
function onCleanup(fn) { S.cleanups.push(fn); }
function runCleanups() { while (S.cleanups.length) { try { S.cleanups.pop()(); } catch (_) { /* ignore */ } } }

function allowedMenus() { return MENUS.filter(([, roles]) => roles.includes(S.me?.role)).map(([n]) => n); }

function renderShell() {
  document.title = t("app.title");
  const top = document.getElementById("top");
  top.hidden = !S.me;
  document.getElementById("brand-title").textContent = t("app.title");
  document.getElementById("brand-sub").textContent = t("app.subtitle");
  document.getElementById("lang").textContent = t("lang.switch");
  document.getElementById("logout").textContent = t("logout");
  if (!S.me) return;
  document.getElementById("who").textContent =
    `${S.me.full_name || S.me.username} · ${tEnum("role", S.me.role)} · ${depName(S.me.department_id)}`;
  const current = location.hash.replace(/^#\/?/, "");
  document.getElementById("menu").replaceChildren(...allowedMenus().map((n) =>
    h("a", { href: `#/${n}`, "data-menu": n, class: n === current ? "active" : "", text: t(`menu.${n}`) })));
}

const VIEWS = {};
function route() {
  runCleanups();
  const view = document.getElementById("view");
  view.replaceChildren();
  if (!S.me) { renderShell(); viewLogin(view); return; }
  const menus = allowedMenus();
  let name = location.hash.replace(/^#\/?/, "");
  if (!menus.includes(name)) {
    name = menus[0];
    if (location.hash !== `#/${name}`) { location.hash = `#/${name}`; return; }
  }
  renderShell();
  view.dataset.view = name;
  VIEWS[name](view);
}

function logout() {
  S.token = null; S.me = null;
  sessionStorage.removeItem("gongche.token");
  if (location.hash) location.hash = ""; else route();
}

// ---------------------------------------------------------------- login
function viewLogin(root) {
  const user = h("input", { type: "text", id: "username", name: "username", autocomplete: "username" });
  const pass = h("input", { type: "password", id: "password", name: "password", autocomplete: "current-password" });
  const box = h("div");
  const form = h("form", { class: "card login", id: "login-form" },
    h("h2", { text: t("login.title") }),
    h("label", { for: "username", text: t("login.username") }), user,
    h("label", { for: "password", text: t("login.password") }), pass,
    box, h("p", {}, h("button", { type: "submit", class: "primary", text: t("login.submit") })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await api("POST", "/api/auth/token", { form: { username: user.value, password: pass.value } });
    if (!r.ok) { message(box, "error", r.status === 401 ? t("login.failed") : errText(r)); return; }
    S.token = r.data.access_token;
    sessionStorage.setItem("gongche.token", S.token);
    await afterLogin(true);
  });
  root.append(form);
  user.focus();
}

async function afterLogin(fresh) {
  const me = await api("GET", "/api/auth/me");
  if (!me.ok) { logout(); return; }
  S.me = me.data;
  if (fresh || !storedLocale()) setLocale(S.me.locale || "zh-CN");
  await loadReference();
  route();
}

// ---------------------------------------------------------------- 指挥 live map
VIEWS.live = (root) => {
  const depSel = h("select", { id: "live-dep" }, options([...S.deps.values()].map((d) => [d.id, d.name]), null, { any: t("common.all") }));
  const catSel = h("select", { id: "live-cat" }, options(CATEGORIES, (c) => tEnum("category", c), { any: t("common.all") }));
  const wsState = h("div", { class: "muted", id: "ws-state", text: t("live.ws.off") });
  const lastEvent = h("div", { class: "muted", id: "last-event", text: "" });
  const count = h("div", { id: "live-count" });
  const list = h("ul", { class: "carlist", id: "car-list" });
  const legend = h("div", { class: "legend" }, Object.entries(STATUS_COLOUR).map(([k, col]) =>
    h("span", {}, h("i", { class: "dot", style: `background:${col}` }), t(`live.status.${k}`))));
  const mapEl = h("div", { id: "map" });
  root.append(h("div", { class: "row" },
    h("div", { class: "grow" }, mapEl),
    h("div", { class: "side card" }, h("h2", { text: t("live.title") }),
      h("label", { text: t("field.department") }), depSel,
      h("label", { text: t("field.category") }), catSel,
      h("p", {}, legend), wsState, lastEvent, count, list)));
  const map = makeMap(mapEl);
  onCleanup(() => map.remove());
  const layer = L.layerGroup().addTo(map);
  const rows = new Map(); const markers = new Map();
  let onBooking = new Map();

  const status = (row) => {
    const b = onBooking.get(row.vehicle_id);
    if (row.status !== "offline" && b) {
      const now = Date.now();
      if (b.status === "in_progress" || (Date.parse(b.start_at) <= now && now <= Date.parse(b.end_at))) return "on_booking";
    }
    return row.status;
  };
  const visible = (row) => (!depSel.value || String(row.department_id) === depSel.value)
    && (!catSel.value || row.category === catSel.value);

  function popup(id) {
    const row = rows.get(id); const b = onBooking.get(id);
    const st = status(row);
    return h("div", { class: "popup", "data-vehicle": id },
      h("strong", { text: row.plate }),
      h("dl", {},
        h("dt", { text: t("field.status") }), h("dd", {}, badge(st, t(`live.status.${st}`))),
        h("dt", { text: t("field.department") }), h("dd", { text: depName(row.department_id) }),
        h("dt", { text: t("field.category") }), h("dd", { text: tEnum("category", row.category) }),
        h("dt", { text: t("field.driver") }), h("dd", { class: "popup-driver", text: b?.assignment ? driverName(b.assignment.driver_id) : t("common.none") }),
        h("dt", { text: t("field.booking") }), h("dd", { class: "popup-booking", text: b ? `#${b.id} ${tEnum("purpose", b.purpose)} ${window2(b)}` : t("common.none") }),
        h("dt", { text: t("field.speed") }), h("dd", { class: "popup-speed", text: t("live.kmh", { v: Number(row.speed_kmh).toFixed(0) }) }),
        h("dt", { text: t("field.time") }), h("dd", { class: "popup-time", text: fmtTime(row.time, true) })));
  }

  function update(row) {
    rows.set(row.vehicle_id, row);
    const st = status(row);
    let m = markers.get(row.vehicle_id);
    if (!m) {
      m = L.circleMarker([row.lat, row.lon], { radius: 8, color: "#fff", weight: 2, fillOpacity: 0.95 });
      m.bindTooltip(h("span", { text: row.plate }));
      m.bindPopup(() => popup(row.vehicle_id));
      markers.set(row.vehicle_id, m);
    }
    m.setLatLng([row.lat, row.lon]);
    m.setStyle({ fillColor: STATUS_COLOUR[st] || "#555" });
    if (visible(row)) layer.addLayer(m); else layer.removeLayer(m);
    if (m.isPopupOpen()) m.setPopupContent(popup(row.vehicle_id));
  }

  let listQueued = false;
  function renderList() {
    listQueued = false;
    const shown = [...rows.values()].filter(visible).sort((a, b) => a.plate.localeCompare(b.plate));
    count.textContent = t("live.count", { n: shown.length });
    list.replaceChildren(...shown.map((row) => {
      const st = status(row);
      return h("li", { "data-vehicle": row.vehicle_id, "data-status": st, onclick: () => {
        map.setView([row.lat, row.lon], Math.max(map.getZoom(), 14));
        markers.get(row.vehicle_id)?.openPopup();
      } }, h("span", { text: row.plate }), badge(st, t(`live.status.${st}`)));
    }));
  }
  const queueList = () => { if (!listQueued) { listQueued = true; setTimeout(renderList, 500); } };

  async function refresh() {
    const want = ["in_progress", "assigned"];
    const next = new Map();
    for (const st of want) {
      for (const b of await pageAll("/api/dispatch/bookings", { status: st })) {
        if (b.assignment && !next.has(b.assignment.vehicle_id)) next.set(b.assignment.vehicle_id, b);
      }
    }
    onBooking = next;
    const r = await api("GET", "/api/live");
    if (r.ok) r.data.forEach(update);
    renderList();
  }
  depSel.addEventListener("change", () => { rows.forEach(update); renderList(); });
  catSel.addEventListener("change", () => { rows.forEach(update); renderList(); });

  let ws = null; let closed = false;
  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${proto}://${location.host}/api/live/ws?token=${encodeURIComponent(S.token)}`);
    ws.onopen = () => { wsState.textContent = t("live.ws.on"); wsState.dataset.state = "on"; };
    ws.onmessage = (ev) => {
      try {
        const msg = JSON.parse(ev.data);
        if (msg.kind === "event") {  // telematics events (overspeed, geofence, …) share the socket
          const car = rows.get(msg.event.vehicle_id);
          lastEvent.textContent = `${t("live.event")}: ${msg.event.type} ${car ? car.plate : ""} ${fmtTime(msg.event.time)}`;
          return;
        }
        update(msg); queueList();
      } catch (_) { /* skip */ }
    };
    ws.onclose = () => {
      wsState.textContent = t("live.ws.off"); wsState.dataset.state = "off";
      if (!closed) setTimeout(() => { if (!closed) connect(); }, 5000);
    };
  }
  refresh().then(connect);
  const timer = setInterval(refresh, 20000);
  onCleanup(() => { closed = true; clearInterval(timer); if (ws) ws.close(); });
};

// ---------------------------------------------------------------- 预约 booking
function fieldBox(name, labelKey, input) {
  const err = h("div", { class: "field-error", "data-error-for": name });
  input.id = input.id || `f-${name}`;
  input.name = name;
  return { name, input, err, el: h("div", { class: "field", "data-field": name },
    h("label", { for: input.id, text: t(labelKey) }), input, err) };
}

function showFieldErrors(fields, generalBox, r) {
  for (const f of Object.values(fields)) { f.err.replaceChildren(); f.input.classList.remove("invalid"); }
  const leftovers = [];
  const errors = r.data?.errors || (r.data?.field ? [{ field: r.data.field, reason: r.data.detail }] : []);
  for (const e of errors) {
    const key = String(e.field || "").split(".")[0];
    const f = fields[key];
    if (f) { f.input.classList.add("invalid"); f.err.append(h("div", { text: tReason(e.reason) })); } else leftovers.push(`${e.field}: ${tReason(e.reason)}`);
  }
  if (errors.length) message(generalBox, "error", [t("book.fix"), ...leftovers].join(" — "));
  else message(generalBox, "error", errText(r));
}
function clearFieldErrors(fields, box) {
  for (const f of Object.values(fields)) { f.err.replaceChildren(); f.input.classList.remove("invalid"); }
  message(box, "", "");
}

function bookingRow(b, actions) {
  const dest = (b.destinations || []).map((d) => d.address).join(" → ");
  return h("tr", { "data-booking": b.id, "data-status": b.status },
    td(`#${b.id}`), td(depName(b.department_id)), td(tEnum("purpose", b.purpose), b.urgent_tag ? ` (${b.urgent_tag})` : ""),
    td(window2(b)), td(`${b.pickup?.address || ""} → ${dest}`), td(String(b.passengers)),
    td(badge(b.status, tEnum("status", b.status)), b.stage && b.status === "submitted" ? ` ${tEnum("stage", b.stage)}` : "",
      b.assignment ? h("div", { class: "muted", text: `${plateOf(b.assignment.vehicle_id)} · ${driverName(b.assignment.driver_id)}` }) : ""),
    td(b.scope_outcome ? badge(b.scope_outcome, tEnum("scope", b.scope_outcome)) : ""),
    td(actions || ""));
}
const BOOKING_HEAD = () => [t("field.id"), t("field.department"), t("field.purpose"), t("field.window"),
  t("field.route"), t("field.passengers"), t("field.status"), t("field.scope"), t("common.actions")];

function reasonPrompt(onGo, labelKey, cls = "") {
  const input = h("input", { type: "text", placeholder: t("common.reason"), class: "reason", style: "width:9em" });
  return h("span", {}, input, " ", h("button", { type: "button", class: cls, text: t(labelKey), onclick: () => onGo(input.value.trim(), input) }));
}

VIEWS.book = async (root) => {
  const places = placesOfCity().map((p) => [p.properties.id, p.properties.name]);
  const placeOf = (id) => {
    const p = placesOfCity().find((f) => f.properties.id === id);
    return p ? { address: p.properties.name, lat: p.geometry.coordinates[1], lon: p.geometry.coordinates[0] } : null;
  };
  const tomorrow = addDays(today(), 1);
  const f = {};
  for (const box of [
    fieldBox("purpose", "field.purpose", h("select", {}, options(PURPOSES, (p) => tEnum("purpose", p)))),
    fieldBox("urgent_tag", "field.urgent_tag", h("select", {}, options(URGENT_TAGS, null, { any: t("common.none") }))),
    fieldBox("passengers", "field.passengers", h("input", { type: "number", min: 1, max: 60, value: "2" })),
    fieldBox("vehicle_category", "field.vehicle_category", h("select", {}, options(CATEGORIES, (c) => tEnum("category", c), { any: t("common.all") }))),
    fieldBox("pickup", "field.pickup", h("select", {}, options(places, null, { any: t("book.place"), selected: "admin-centre" }))),
    fieldBox("destinations", "field.destinations", h("select", {}, options(places, null, { any: t("book.place") }))),
    fieldBox("start_at", "field.start_at", h("input", { type: "datetime-local", value: `${tomorrow}T09:00` })),
    fieldBox("end_at", "field.end_at", h("input", { type: "datetime-local", value: `${tomorrow}T12:00` })),
    fieldBox("return_trip", "field.return_trip", h("input", { type: "checkbox", checked: true })),
    fieldBox("notes", "field.notes", h("textarea", { rows: 2, maxlength: 2000 })),
  ]) f[box.name] = box;
  const general = h("div", { id: "book-msg" });
  const scopeBox = h("div", { id: "scope-box", class: "muted", text: "" });
  const body = () => {
    const dest = placeOf(f.destinations.input.value);
    return {
      purpose: f.purpose.input.value,
      urgent_tag: f.urgent_tag.input.value || null,
      passengers: f.passengers.input.value === "" ? null : Number(f.passengers.input.value),
      pickup: placeOf(f.pickup.input.value),
      destinations: dest ? [dest] : [],
      start_at: toIso(f.start_at.input.value), end_at: toIso(f.end_at.input.value),
      return_trip: f.return_trip.input.checked,
      vehicle_category: f.vehicle_category.input.value || null,
      notes: f.notes.input.value,
    };
  };
  async function evaluate() {
    const r = await api("POST", "/api/dispatch/bookings/evaluate", { body: body() });
    if (!r.ok) { showFieldErrors(f, general, r); scopeBox.replaceChildren(); return null; }
    clearFieldErrors(f, general);
    scopeBox.replaceChildren(h("div", { class: "scope-outcome", "data-outcome": r.data.outcome },
      `${t("book.scope")}: `, badge(r.data.outcome, tEnum("scope", r.data.outcome))),
    h("ul", {}, r.data.reasons.map((x) => h("li", {}, badge(x.outcome, tEnum("scope", x.outcome)), " ", x.name, ": ", x.message))));
    return r.data;
  }
  let debounce = 0;
  const form = h("form", { class: "card", id: "booking-form", novalidate: true },
    h("h2", { text: t("book.new") }),
    h("div", { class: "row" }, ...["purpose", "urgent_tag", "passengers", "vehicle_category"].map((k) => h("div", { class: "grow", style: "min-width:160px" }, f[k].el))),
    h("div", { class: "row" }, ...["pickup", "destinations", "start_at", "end_at"].map((k) => h("div", { class: "grow", style: "min-width:160px" }, f[k].el))),
    h("div", { class: "row" }, h("div", {}, f.return_trip.el), h("div", { class: "grow" }, f.notes.el)),
    scopeBox, general,
    h("p", {}, h("button", { type: "button", id: "evaluate", text: t("book.evaluate"), onclick: evaluate }), " ",
      h("button", { type: "submit", class: "primary", id: "submit-booking", text: t("book.submit") })));
  form.addEventListener("change", () => { clearTimeout(debounce); debounce = setTimeout(evaluate, 400); });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearTimeout(debounce);
    const r = await api("POST", "/api/dispatch/bookings", { body: { ...body(), submit: true } });
    if (!r.ok) { showFieldErrors(f, general, r); return; }
    clearFieldErrors(f, general);
    message(general, "ok", t("book.submitted", { id: r.data.id }));
    await loadLists();
  });
  const mine = h("div", { id: "my-bookings" });
  const queue = h("div", { id: "approval-queue" });
  const queueMsg = h("div");
  const canApprove = ["approver", "admin"].includes(S.me.role);
  if (canApprove) root.append(h("div", { class: "card" }, h("h2", { text: t("book.queue") }), queueMsg, queue));
  if (S.me.role !== "admin") root.append(form);
  root.append(h("div", { class: "card" }, h("h2", { text: t("book.mine") }), mine));

  async function decide(b, action, reason, box) {
    if (action === "reject" && !reason) { message(box, "error", t("book.reason_needed")); return; }
    const r = await api("POST", `/api/dispatch/bookings/${b.id}/${action}`, { body: { reason, version: b.version } });
    if (!r.ok) { message(box, "error", errText(r)); return; }
    message(box, "ok", `#${b.id} ${tEnum("status", r.data.status)}`);
    await loadLists();
  }
  async function loadLists() {
    const all = await pageAll("/api/dispatch/bookings");
    const own = all.filter((b) => b.requester_id === S.me.id).sort((a, b) => b.id - a.id);
    mine.replaceChildren(table(BOOKING_HEAD(), own.map((b) => bookingRow(b, h("span", {},
      b.status === "draft" ? h("button", { type: "button", class: "primary submit-draft", text: t("book.submit"), onclick: async () => {
        const r = await api("POST", `/api/dispatch/bookings/${b.id}/submit`, { body: { version: b.version } });
        if (!r.ok) message(general, "error", errText(r)); else { message(general, "ok", t("book.submitted", { id: b.id })); await loadLists(); }
      } }) : "", " ",
      ["draft", "submitted", "approved", "assigned"].includes(b.status) && (b.allowed || []).includes("cancel")
        ? reasonPrompt((reason) => decide(b, "cancel", reason || "—", general), "book.cancel", "danger") : "")))));
    if (canApprove) {
      const pending = all.filter((b) => b.status === "submitted" && ["department", "extra"].includes(b.stage)
        && (S.me.role === "admin" || b.department_id === S.me.department_id || S.deps.has(b.department_id)));
      queue.replaceChildren(table(BOOKING_HEAD(), pending.map((b) => bookingRow(b, h("span", {},
        h("button", { type: "button", class: "primary approve", text: t("book.approve"), onclick: () => decide(b, "approve", "同意", queueMsg) }), " ",
        reasonPrompt((reason) => decide(b, "reject", reason, queueMsg), "book.reject", "danger"))))));
    }
  }
  await loadLists();
};

// ---------------------------------------------------------------- 调度 dispatch board
VIEWS.dispatch = async (root) => {
  let day = today();
  let picked = null;
  const msg = h("div", { id: "dispatch-msg" });
  const dayInput = h("input", { type: "date", id: "dispatch-day", value: day });
  const pending = h("div", { id: "unassigned" });
  const gantt = h("div", { class: "gantt", id: "gantt" });
  const planBox = h("div", { id: "plan-box" });
  const vehSel = h("select", { id: "assign-vehicle" });
  const drvSel = h("select", { id: "assign-driver" },
    options([...S.drivers.values()].filter((d) => d.status === "active").map((d) => [d.id, `${d.name} (${d.employee_no})`])));
  const pickInfo = h("div", { id: "picked", class: "muted", text: t("dispatch.pick") });
  const assignBtn = h("button", { type: "button", class: "primary", id: "assign", disabled: true, text: t("dispatch.assign") });
  const optimiseBtn = h("button", { type: "button", id: "optimise", text: t("dispatch.optimise") });
  root.append(
    h("div", { class: "card inline" },
      h("div", {}, h("label", { for: "dispatch-day", text: t("dispatch.day") }), dayInput),
      h("div", {}, h("button", { type: "button", text: "◀", onclick: () => { dayInput.value = addDays(dayInput.value, -1); load(); } }), " ",
        h("button", { type: "button", text: "▶", onclick: () => { dayInput.value = addDays(dayInput.value, 1); load(); } }), " ",
        h("button", { type: "button", text: t("common.refresh"), onclick: () => load() }), " ", optimiseBtn)),
    msg, planBox,
    h("div", { class: "row" },
      h("div", { class: "card grow" }, h("h2", { text: t("dispatch.unassigned") }), pending),
      h("div", { class: "card", style: "width:340px" }, h("h2", { text: t("dispatch.assign") }), pickInfo,
        h("label", { for: "assign-vehicle", text: t("field.vehicle") }), vehSel,
        h("label", { for: "assign-driver", text: t("field.driver") }), drvSel,
        h("p", {}, assignBtn))),
    h("div", { class: "card" }, h("h2", { text: t("dispatch.gantt") }), gantt));
  dayInput.addEventListener("change", () => load());

  const vehicles = () => [...S.vehicles.values()].filter((v) => v.status === "in_service")
    .sort((a, b) => a.department_id - b.department_id || a.plate.localeCompare(b.plate));

  function pick(b) {
    picked = b;
    pickInfo.textContent = `${t("dispatch.picked", { id: b.id })}: ${tEnum("purpose", b.purpose)} · ${window2(b)} · ${t("field.passengers")} ${b.passengers}`;
    const fits = vehicles().filter((v) => v.seats >= b.passengers && (!b.vehicle_category || v.category === b.vehicle_category));
    vehSel.replaceChildren(...options(fits.map((v) => [v.id, `${v.plate} · ${tEnum("category", v.category)} · ${v.seats}`])));
    assignBtn.disabled = false;
    pending.querySelectorAll("tr").forEach((tr) => tr.classList.toggle("picked", tr.dataset.booking === String(b.id)));
    drawGantt();
  }
  assignBtn.addEventListener("click", async () => {
    if (!picked) return;
    const r = await api("POST", `/api/dispatch/bookings/${picked.id}/assign`, { body: {
      vehicle_id: Number(vehSel.value), driver_id: Number(drvSel.value), version: picked.version } });
    if (!r.ok) { message(msg, "error", r.status === 409 ? `${t("dispatch.conflict")}: ${errText(r)}` : errText(r)); return; }
    message(msg, "ok", t("dispatch.assigned", { id: picked.id }));
    picked = null; assignBtn.disabled = true; pickInfo.textContent = t("dispatch.pick");
    await load(false);
  });

  let dayBookings = [];
  async function load(clearMsg = true) {
    day = dayInput.value || today();
    if (clearMsg) message(msg, "", "");
    const [submitted, approved] = await Promise.all([
      pageAll("/api/dispatch/bookings", { status: "submitted" }), pageAll("/api/dispatch/bookings", { status: "approved" })]);
    const rows = [...submitted.filter((b) => b.stage === "dispatch"), ...approved]
      .sort((a, b) => Date.parse(a.start_at) - Date.parse(b.start_at));
    pending.replaceChildren(table(BOOKING_HEAD(), rows.map((b) => {
      const act = b.status === "submitted"
        ? h("button", { type: "button", class: "review", text: t("dispatch.review"), onclick: async () => {
          const r = await api("POST", `/api/dispatch/bookings/${b.id}/approve`, { body: { reason: "调度审核通过", version: b.version } });
          if (!r.ok) message(msg, "error", errText(r)); else await load(false);
        } })
        : h("button", { type: "button", class: "primary pick", text: "✓", title: t("dispatch.pick"), onclick: () => pick(b) });
      return bookingRow(b, act);
    })));
    const from = dayStartIso(day); const to = dayStartIso(addDays(day, 1));
    dayBookings = (await pageAll("/api/dispatch/bookings", { from, to }))
      .filter((b) => b.assignment && Date.parse(b.end_at) > Date.parse(from) && Date.parse(b.start_at) < Date.parse(to));
    drawGantt();
  }

  function drawGantt() {
    const vs = vehicles();
    const labelW = 150; const hourW = 42; const rowH = 22; const top = 20;
    const W = labelW + 24 * hourW + 10; const H = top + vs.length * rowH + 4;
    const t0 = Date.parse(dayStartIso(day));
    const x = (ms) => labelW + Math.max(0, Math.min(24, (ms - t0) / 3600000)) * hourW;
    const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
    for (let hr = 0; hr <= 24; hr += 1) {
      svg.append(s("line", { x1: labelW + hr * hourW, x2: labelW + hr * hourW, y1: top - 4, y2: H, stroke: hr % 6 ? "#eef1f4" : "#cfd6de" }));
      if (hr < 24 && hr % 2 === 0) svg.append(s("text", { x: labelW + hr * hourW + 2, y: 12, fill: "#555" }, `${String(hr).padStart(2, "0")}:00`));
    }
    const now = Date.now();
    if (now > t0 && now < t0 + 86400000) svg.append(s("line", { x1: x(now), x2: x(now), y1: top - 4, y2: H, stroke: "#c0392b", "stroke-width": 1.5, class: "now" }));
    if (picked) {
      svg.append(s("rect", { x: x(Date.parse(picked.start_at)), y: top, width: Math.max(2, x(Date.parse(picked.end_at)) - x(Date.parse(picked.start_at))), height: H - top, fill: "#f1c40f", opacity: 0.18 }));
    }
    vs.forEach((v, i) => {
      const y = top + i * rowH;
      const hit = s("rect", { class: "rowhit", x: 0, y, width: W, height: rowH, fill: i % 2 ? "#fafbfc" : "#fff", "data-vehicle": v.id });
      hit.addEventListener("click", () => { if (picked && [...vehSel.options].some((o) => o.value === String(v.id))) vehSel.value = String(v.id); });
      svg.append(hit);
      svg.append(s("text", { x: 4, y: y + 15, fill: "#222" }, `${v.plate} ${tEnum("category", v.category)}`));
      for (const b of dayBookings.filter((bb) => bb.assignment.vehicle_id === v.id)) {
        const x1 = x(Date.parse(b.start_at)); const x2 = x(Date.parse(b.end_at));
        const colour = { assigned: "#1f5fa8", in_progress: "#e67e22", completed: "#2e8b57" }[b.status] || "#7f8c8d";
        const g = s("g", { class: "bar", "data-booking": b.id });
        g.append(s("rect", { x: x1, y: y + 3, width: Math.max(3, x2 - x1), height: rowH - 6, rx: 3, fill: colour }));
        g.append(s("text", { x: x1 + 3, y: y + 15, fill: "#fff" }, `#${b.id} ${driverName(b.assignment.driver_id)}`));
        g.append(s("title", {}, `#${b.id} ${tEnum("purpose", b.purpose)} ${window2(b)} ${tEnum("status", b.status)}`));
        svg.append(g);
      }
    });
    gantt.replaceChildren(svg);
  }

  // The planner (scheduler/, POST /api/plans) may not exist in this deployment: a 404 says so.
  // Its request shape is tried defensively: a day ({day}) first, then a period ({from, to}).
  optimiseBtn.addEventListener("click", async () => {
    message(msg, "", "");
    const shapes = [{ day }, { from: dayStartIso(day), to: dayStartIso(addDays(day, 1)) }];
    let r = null; let req = null;
    for (const shape of shapes) {
      req = shape;
      r = await api("POST", "/api/plans", { body: { ...shape, commit: false } });
      if (r.status !== 422) break;
    }
    if (r.status === 404 || r.status === 405) { message(msg, "info", t("dispatch.planner_unavailable")); planBox.replaceChildren(); return; }
    if (!r.ok) { message(msg, "error", errText(r)); return; }
    message(msg, "", "");
    renderPlan(r.data, req);
  });
  function planRows(plan) {
    const direct = plan.assignments || plan.plan?.assignments;
    if (Array.isArray(direct)) return direct;
    const rows = [];
    for (const route of plan.routes || plan.plan?.routes || []) {
      for (const b of route.bookings || route.booking_ids || []) {
        const obj = typeof b === "object" && b !== null ? b : { booking_id: b };
        rows.push({ vehicle_id: route.vehicle_id, driver_id: route.driver_id, ...obj,
          booking_id: obj.booking_id ?? obj.id });
      }
    }
    return rows;
  }
  function renderPlan(plan, req) {
    const assigned = planRows(plan);
    const unserved = plan.unserved || plan.unassigned || plan.plan?.unserved || [];
    const commitBtn = h("button", { type: "button", class: "primary", id: "commit-plan", text: t("dispatch.commit") });
    commitBtn.addEventListener("click", async () => {
      const id = plan.id ?? plan.plan_id;
      const r = id !== undefined && id !== null
        ? await api("POST", `/api/plans/${encodeURIComponent(id)}/commit`, { body: {} })
        : await api("POST", "/api/plans", { body: { ...req, commit: true } });
      if (!r.ok) { message(msg, r.status === 404 ? "info" : "error", r.status === 404 ? t("dispatch.planner_unavailable") : errText(r)); return; }
      message(msg, "ok", t("dispatch.committed"));
      planBox.replaceChildren();
      await loadReference();
      await load(false);
    });
    const text = (v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
    const why = (u) => (typeof u !== "object" || u === null ? "" : text((getLocale() === "zh-CN" && u.reason_zh) || u.reason || u.reasons || u.explanation || u.code));
    planBox.replaceChildren(h("div", { class: "card", id: "plan-preview" }, h("h2", { text: t("dispatch.plan") }),
      table([t("field.booking"), t("field.vehicle"), t("field.driver"), t("field.window")], assigned.map((a) => h("tr", { "data-booking": text(a.booking_id) },
        td(`#${text(a.booking_id)}`), td(plateOf(a.vehicle_id)), td(driverName(a.driver_id)),
        td(a.start_at ? `${fmtTime(a.start_at)} – ${fmtTime(a.end_at)}` : ""))), "—"),
      h("h3", { text: t("dispatch.unserved") }),
      table([t("field.booking"), t("common.reason")], unserved.map((u) => h("tr", { class: "unserved" },
        td(`#${text(typeof u === "object" && u !== null ? (u.booking_id ?? u.id) : u)}`), td(why(u))))),
      h("p", {}, commitBtn)));
  }
  await load();
};

// ---------------------------------------------------------------- 监管 supervision
VIEWS.supervise = async (root) => {
  const tabs = ["replay", "suspicions", "reports", "audit"];
  const panes = Object.fromEntries(tabs.map((k) => [k, h("div", { id: `pane-${k}`, hidden: k !== "replay" })]));
  const bar = h("div", { class: "tabs" }, tabs.map((k) => h("button", { type: "button", "data-tab": k,
    class: k === "replay" ? "active" : "", text: t(`sup.${k}`), onclick: () => show(k) })));
  root.append(bar, ...Object.values(panes));
  function show(k) {
    for (const [name, pane] of Object.entries(panes)) pane.hidden = name !== k;
    bar.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b.dataset.tab === k));
    if (k === "replay") setTimeout(() => map.invalidateSize(), 0);
    if (loaders[k] && !loaded.has(k)) { loaded.add(k); loaders[k](); }
  }
  const loaded = new Set(["replay"]);

  // --- route replay
  const vehSel = h("select", { id: "replay-vehicle" }, options([...S.vehicles.values()].sort((a, b) => a.plate.localeCompare(b.plate)).map((v) => [v.id, v.plate])));
  const from = h("input", { type: "datetime-local", id: "replay-from", value: `${today()}T00:00` });
  const to = h("input", { type: "datetime-local", id: "replay-to", value: localInput(new Date(Date.now() + 3600000)) });
  const slider = h("input", { type: "range", class: "slider", id: "replay-slider", min: 0, max: 0, value: 0, disabled: true });
  const cursor = h("div", { id: "replay-cursor", class: "muted" });
  const info = h("div", { id: "replay-info" });
  const trips = h("div", { id: "replay-bookings" });
  const mapEl = h("div", { class: "map small", id: "replay-map" });
  panes.replay.append(h("div", { class: "card inline" },
    h("div", {}, h("label", { for: "replay-vehicle", text: t("field.vehicle") }), vehSel),
    h("div", {}, h("label", { for: "replay-from", text: t("common.from") }), from),
    h("div", {}, h("label", { for: "replay-to", text: t("common.to") }), to),
    h("div", {}, h("button", { type: "button", class: "primary", id: "replay-load", text: t("common.load"), onclick: () => replay() }))),
  h("div", { class: "row" }, h("div", { class: "grow" }, mapEl, slider, cursor),
    h("div", { class: "card", style: "width:360px" }, info, trips)));
  const map = makeMap(mapEl);
  onCleanup(() => map.remove());
  const trackLayer = L.layerGroup().addTo(map);
  const carMarker = L.circleMarker([0, 0], { radius: 8, color: "#fff", weight: 2, fillColor: "#e67e22", fillOpacity: 1 });
  let track = null;
  slider.addEventListener("input", () => moveCursor(Number(slider.value)));
  function moveCursor(i) {
    if (!track) return;
    const [lon, lat] = track.coords[i];
    carMarker.setLatLng([lat, lon]);
    cursor.textContent = `${fmtTime(track.times[i], true)} · ${t("live.kmh", { v: Number(track.speeds[i] ?? 0).toFixed(0) })}`;
  }
  async function replay(vehicleId, fromIso, toIso_) {
    if (vehicleId) vehSel.value = String(vehicleId);
    if (fromIso) from.value = localInput(new Date(fromIso));
    if (toIso_) to.value = localInput(new Date(toIso_));
    const id = vehSel.value; const q = { from: toIso(from.value), to: toIso(to.value) };
    trackLayer.clearLayers(); track = null; slider.disabled = true; cursor.textContent = "";
    info.replaceChildren(t("common.loading"));
    const [tr, ev, mi] = await Promise.all([
      api("GET", `/api/vehicles/${id}/track`, { query: q }),
      api("GET", "/api/events", { query: { vehicle_id: id, ...q, limit: 500 } }),
      api("GET", `/api/vehicles/${id}/mileage`, { query: q })]);
    info.replaceChildren();
    if (!tr.ok) { message(info, "error", errText(tr)); return; }
    const feat = typeof tr.data === "string" ? JSON.parse(tr.data) : tr.data;
    const g = feat.geometry;
    if (!g) { message(info, "info", t("sup.no_track")); } else {
      const coords = g.type === "Point" ? [g.coordinates] : g.coordinates;
      track = { coords, times: feat.properties.times, speeds: feat.properties.speeds_kmh || [] };
      const latlngs = coords.map(([lon, lat]) => [lat, lon]);
      const line = L.polyline(latlngs, { color: "#1f5fa8", weight: 4, opacity: 0.85 }).addTo(trackLayer);
      L.circleMarker(latlngs[0], { radius: 6, color: "#2e8b57", fillOpacity: 1 }).addTo(trackLayer);
      L.circleMarker(latlngs[latlngs.length - 1], { radius: 6, color: "#c0392b", fillOpacity: 1 }).addTo(trackLayer);
      carMarker.addTo(trackLayer);
      map.fitBounds(line.getBounds(), { padding: [20, 20] });
      slider.max = String(coords.length - 1); slider.value = "0"; slider.disabled = false;
      moveCursor(0);
    }
    const events = ev.ok ? ev.data.items : [];
    for (const e of events) {
      if (e.lat === null || e.lon === null) continue;
      L.circleMarker([e.lat, e.lon], { radius: 6, color: "#c0392b", fillColor: "#fadbd8", fillOpacity: 1 })
        .bindTooltip(h("span", { text: `${e.type} ${fmtTime(e.time, true)}` })).addTo(trackLayer);
    }
    if (mi.ok) info.append(h("h3", { id: "replay-mileage", text: t("sup.mileage_total", { km: Number(mi.data.total_km).toFixed(2), trips: mi.data.trips }) }));
    info.append(h("div", { class: "muted", text: t("sup.events", { n: events.length }) }),
      h("ul", {}, events.slice(0, 20).map((e) => h("li", { text: `${fmtTime(e.time, true)} ${e.type}${e.value !== null ? ` ${e.value}` : ""}` }))));
    const booked = (await pageAll("/api/dispatch/bookings", { from: q.from, to: q.to }))
      .filter((b) => b.assignment && String(b.assignment.vehicle_id) === String(id));
    trips.replaceChildren(h("h3", { text: t("field.booking") }), table([t("field.id"), t("field.window"), t("field.status"), t("field.km")],
      booked.map((b) => h("tr", { "data-booking": b.id }, td(`#${b.id}`), td(window2(b)), td(badge(b.status, tEnum("status", b.status))),
        td((Number(b.distance_m || 0) / 1000).toFixed(2))))));
  }

  // --- suspicions
  const loaders = {};
  loaders.suspicions = async () => {
    const r = await api("GET", "/api/dispatch/suspicions");
    if (!r.ok) { message(panes.suspicions, "error", errText(r)); return; }
    const evidence = (ev) => h("ul", { class: "evidence" }, Object.entries(ev || {}).map(([k, v]) =>
      h("li", { "data-key": k }, h("strong", { text: `${k}: ` }), evidenceValue(k, v))));
    panes.suspicions.replaceChildren(h("div", { class: "card" }, h("h2", { text: t("sup.suspicions") }),
      table([t("field.id"), t("field.vehicle"), t("field.department"), t("field.kind"), t("field.severity"), t("field.window"), t("field.status"), t("field.evidence"), ""],
        r.data.map((x) => h("tr", { "data-suspicion": x.id },
          td(`#${x.id}`), td(plateOf(x.vehicle_id)), td(depName(x.department_id)), td(badge("bad", tEnum("susp", x.kind))),
          td(badge(x.severity, tEnum("severity", x.severity))), td(window2(x)), td(badge(x.status, tEnum("susp", x.status))), td(evidence(x.evidence)),
          td(h("button", { type: "button", class: "show-route", text: t("sup.show_route"), onclick: () => {
            show("replay");
            replay(x.vehicle_id, new Date(Date.parse(x.start_at) - 600000).toISOString(), new Date(Date.parse(x.end_at) + 600000).toISOString());
          } })))))));
  };

  // --- reports
  loaders.reports = async () => {
    const month = h("input", { type: "month", id: "report-month", value: today().slice(0, 7) });
    const rFrom = h("input", { type: "date", id: "report-from", value: `${today().slice(0, 8)}01` });
    const rTo = h("input", { type: "date", id: "report-to", value: addDays(today(), 3) });
    const out = h("div", { id: "report-out" });
    const dl = h("div", { class: "downloads", id: "downloads" });
    const dlMsg = h("div");
    const link = (key, path, query, file) => h("a", { href: "#", "data-download": key, onclick: async (ev) => {
      ev.preventDefault();
      const r = await download(path, query(), file());
      if (!r.ok) message(dlMsg, "error", `${t("common.error")} ${r.status}`);
    } }, t(`sup.xlsx.${key}`));
    dl.append(h("strong", { text: `${t("sup.excel")}: ` }),
      link("sangong", "/api/ledger/reports/sangong", () => ({ month: month.value }), () => `sangong-${month.value}.xlsx`),
      link("stats", "/api/dispatch/stats", () => ({ from: dayStartIso(rFrom.value), to: dayStartIso(rTo.value), format: "xlsx" }), () => "stats.xlsx"),
      link("audit", "/api/dispatch/audit", () => ({ from: dayStartIso(rFrom.value), to: dayStartIso(rTo.value), format: "xlsx" }), () => "audit.xlsx"));
    panes.reports.append(h("div", { class: "card inline" },
      h("div", {}, h("label", { for: "report-from", text: t("common.from") }), rFrom),
      h("div", {}, h("label", { for: "report-to", text: t("common.to") }), rTo),
      h("div", {}, h("label", { for: "report-month", text: t("sup.month") }), month),
      h("div", {}, h("button", { type: "button", class: "primary", id: "report-load", text: t("common.load"), onclick: () => run() }))),
    h("div", { class: "card" }, dl, dlMsg), out);
    async function run() {
      const q = { from: dayStartIso(rFrom.value), to: dayStartIso(rTo.value) };
      const [mil, cost, st] = await Promise.all([
        api("GET", "/api/reports/mileage", { query: { ...q, group: "vehicle", period: "month" } }),
        api("GET", "/api/ledger/costs/rollup", { query: { month: month.value } }),
        api("GET", "/api/dispatch/stats", { query: q })]);
      out.replaceChildren();
      if (st.ok && st.data.total) out.append(h("div", { class: "msg info", id: "stats-line", text: t("sup.stats", st.data.total) }));
      const kmBy = new Map();
      if (mil.ok) for (const row of mil.data) kmBy.set(row.plate || plateOf(row.vehicle_id), (kmBy.get(row.plate || plateOf(row.vehicle_id)) || 0) + row.km);
      out.append(h("div", { class: "row" },
        h("div", { class: "card grow", id: "mileage-chart" }, h("h3", { text: t("sup.mileage_chart") }),
          mil.ok ? barChart([...kmBy.entries()].sort((a, b) => b[1] - a[1]).slice(0, 20), (v) => v.toFixed(1)) : h("div", { class: "msg error", text: errText(mil) })),
        h("div", { class: "card grow", id: "cost-chart" }, h("h3", { text: t("sup.cost_chart") }),
          cost.ok ? barChart(cost.data.map((c) => [depName(c.department_id) || "—", (c.running_fen || 0) / 100]), (v) => yuan(v * 100)) : h("div", { class: "msg error", text: errText(cost) }))));
    }
    await run();
  };

  // --- audit trail
  loaders.audit = async () => {
    const r = await api("GET", "/api/dispatch/audit");
    if (!r.ok) { message(panes.audit, "error", errText(r)); return; }
    const rows = [...r.data].sort((a, b) => b.id - a.id).slice(0, 300);
    const users = new Map((await pageAll("/api/users")).map((u) => [u.id, u.full_name || u.username]));
    panes.audit.replaceChildren(h("div", { class: "card", id: "audit-table" }, h("h2", { text: t("sup.audit") }),
      table([t("field.at"), t("field.actor"), t("field.action"), t("field.entity"), t("common.reason")],
        rows.map((e) => h("tr", {}, td(fmtTime(e.at, true)), td(e.actor_id ? users.get(e.actor_id) ?? `#${e.actor_id}` : "—"), td(e.action),
          td(`${e.entity} ${e.entity_id}`), td(e.reason))))));
  };
};

// Suspicion evidence, readable: times in Beijing time, distances in km, tracks as a count.
function evidenceValue(key, v) {
  if (v === null || v === undefined) return "—";
  if (Array.isArray(v)) return v.length > 4 ? t("sup.points", { n: v.length }) : v.map((x) => (typeof x === "object" ? JSON.stringify(x) : String(x))).join(", ");
  if (typeof v !== "object") return String(v);
  const parts = [];
  for (const [k, x] of Object.entries(v)) {
    if (x === null || x === undefined || x === "") continue;
    if (k === "distance_m") parts.push(`${(Number(x) / 1000).toFixed(2)} km`);
    else if (typeof x === "string" && /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(x) && !k.endsWith("_local")) parts.push(`${k} ${fmtTime(x)}`);
    else if (typeof x === "object") parts.push(`${k} ${Object.entries(x).filter(([, y]) => typeof y !== "object").map(([a, b]) => `${a}=${b}`).join(" ")}`);
    else parts.push(`${k}=${x}`);
  }
  return parts.join(" · ").slice(0, 400);
}

function barChart(pairs, fmtValue) {
  if (!pairs.length) return h("div", { class: "muted", text: t("common.empty") });
  const labelW = 150; const barMax = 320; const rowH = 20; const W = labelW + barMax + 80;
  const max = Math.max(...pairs.map(([, v]) => v), 1e-9);
  const svg = s("svg", { class: "chart", width: W, height: pairs.length * rowH + 6, role: "img" });
  pairs.forEach(([label, v], i) => {
    const y = i * rowH + 3;
    svg.append(s("text", { x: 0, y: y + 13 }, label));
    svg.append(s("rect", { x: labelW, y, width: Math.max(1, (v / max) * barMax), height: rowH - 5, fill: "#1f5fa8", rx: 2 }));
    svg.append(s("text", { x: labelW + (v / max) * barMax + 4, y: y + 13, fill: "#333" }, fmtValue(v)));
  });
  return svg;
}

// ---------------------------------------------------------------- 台账与资产 ledger & assets
VIEWS.ledger = async (root) => {
  const vehicles = h("div", { id: "ledger-vehicles" });
  const quotas = h("div", { id: "ledger-quotas" });
  const purchases = h("div", { id: "ledger-purchases" });
  const msg = h("div", { id: "purchase-msg" });
  const f = {};
  for (const box of [
    fieldBox("department_id", "field.department", h("select", {}, options([...S.deps.values()].map((d) => [d.id, d.name]), null, { selected: S.me.department_id }))),
    fieldBox("kind", "field.kind", h("select", {}, options(["purchase", "renewal"], (k) => tEnum("preq", k)))),
    fieldBox("category", "field.category", h("select", {}, options(CATEGORIES, (c) => tEnum("category", c)))),
    fieldBox("brand_model", "field.brand_model", h("input", { type: "text", maxlength: 80 })),
    fieldBox("price_fen", "field.price", h("input", { type: "number", min: 0, step: "0.01" })),
    fieldBox("displacement_l", "field.displacement", h("input", { type: "number", min: 0, max: 10, step: "0.1", value: "0" })),
    fieldBox("energy_type", "field.energy", h("select", {}, options(ENERGY, (e) => tEnum("energy", e)))),
    fieldBox("seats", "field.seats", h("input", { type: "number", min: 1, max: 60, value: "5" })),
    fieldBox("justification", "field.justification", h("textarea", { rows: 2, maxlength: 1000 })),
  ]) f[box.name] = box;
  const form = h("form", { class: "card", id: "purchase-form", novalidate: true }, h("h2", { text: t("ledger.new_purchase") }),
    h("div", { class: "row" }, ...Object.values(f).map((x) => h("div", { class: "grow", style: "min-width:150px" }, x.el))), msg,
    h("p", {}, h("button", { type: "submit", class: "primary", text: t("book.submit") })));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const price = f.price_fen.input.value;
    const r = await api("POST", "/api/ledger/purchases", { body: {
      department_id: Number(f.department_id.input.value), kind: f.kind.input.value, category: f.category.input.value,
      brand_model: f.brand_model.input.value, price_fen: price === "" ? null : Math.round(Number(price) * 1e6),
      displacement_l: Number(f.displacement_l.input.value || 0), energy_type: f.energy_type.input.value,
      seats: Number(f.seats.input.value || 0), justification: f.justification.input.value } });
    if (!r.ok) { showFieldErrors(f, msg, r); return; }
    clearFieldErrors(f, msg);
    message(msg, r.data.decision_ok ? "ok" : "error", `#${r.data.id} ${r.data.decision_ok ? t("ledger.ok") : t("ledger.not_ok")}`);
    await load();
  });
  root.append(h("div", { class: "row" },
    h("div", { class: "card grow" }, h("h2", { text: t("ledger.vehicles") }), vehicles),
    h("div", { class: "card", style: "width:480px" }, h("h2", { text: t("ledger.quotas") }), quotas)),
  h("div", { class: "card" }, h("h2", { text: t("ledger.purchases") }), purchases), form);

  const reasonText = (x) => (typeof x === "string" ? x : x.message || x.reason || x.detail || JSON.stringify(x));
  async function load() {
    await loadReference();
    const vs = [...S.vehicles.values()].sort((a, b) => a.department_id - b.department_id || a.plate.localeCompare(b.plate));
    vehicles.replaceChildren(table([t("field.plate"), t("field.department"), t("field.category"), t("field.energy"), t("field.seats"), t("field.odometer"), t("field.life_cycle"), t("field.marked")],
      vs.map((v) => h("tr", { "data-vehicle": v.id }, td(v.plate), td(depName(v.department_id)), td(tEnum("category", v.category)),
        td(tEnum("energy", v.energy_type)), td(String(v.seats)), td(Number(v.odometer_km).toFixed(0)),
        td(badge(v.status === "in_service" ? "ok" : "bad", tEnum("vstatus", v.status))), td(tEnum("marked", v.marked ? "yes" : "no"))))));
    const [q, p] = await Promise.all([api("GET", "/api/ledger/quotas/status"), api("GET", "/api/ledger/purchases")]);
    quotas.replaceChildren(q.ok ? table([t("field.department"), t("field.category"), t("field.approved"), t("field.count"), t("field.over"), t("field.room")],
      q.data.map((x) => h("tr", {}, td(depName(x.department_id)), td(tEnum("category", x.category)), td(x.approved ?? "—"), td(String(x.count)),
        td(x.over ? badge("bad", String(x.over)) : "0"), td(String(x.room))))) : h("div", { class: "msg error", text: errText(q) }));
    purchases.replaceChildren(p.ok ? table([t("field.id"), t("field.department"), t("field.kind"), t("field.category"), t("field.brand_model"), t("field.price"), t("field.displacement"), t("field.energy"), t("field.status"), t("field.outcome")],
      p.data.sort((a, b) => b.id - a.id).map((x) => h("tr", { "data-purchase": x.id }, td(`#${x.id}`), td(depName(x.department_id)), td(tEnum("preq", x.kind)),
        td(tEnum("category", x.category)), td(x.brand_model), td((x.price_fen / 1e6).toFixed(2)), td(String(x.displacement_l)), td(tEnum("energy", x.energy_type)),
        td(badge(x.status, tEnum("preq", x.status))),
        td(badge(x.decision_ok ? "ok" : "bad", x.decision_ok ? t("ledger.ok") : t("ledger.not_ok")),
          h("ul", { class: "evidence" }, (x.reasons || []).map((y) => h("li", { text: reasonText(y) }))))))) : h("div", { class: "msg error", text: errText(p) }));
  }
  await load();
};

// ---------------------------------------------------------------- start
async function start() {
  setLocale(storedLocale() || (navigator.language?.startsWith("zh") ? "zh-CN" : "zh-CN"));
  document.getElementById("lang").addEventListener("click", () => { setLocale(getLocale() === "en" ? "zh-CN" : "en"); route(); });
  document.getElementById("logout").addEventListener("click", logout);
  window.addEventListener("hashchange", route);
  const [cfg, city] = await Promise.all([api("GET", "/api/console/config"), api("GET", "/api/console/city")]);
  S.config = cfg.ok ? cfg.data : { centre: [30.66, 104.06], zoom: 13, tile_url: null };
  S.city = city.ok ? city.data : null;
  if (S.token) await afterLogin(false); else route();
  document.body.dataset.ready = "1";
}

start();
