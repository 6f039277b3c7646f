// cascade web page: the five-layer cake's totals as of the materialized view, kept live by the
// Server-Sent-Event feed that follows the totals' position (read with fetch streaming, so a
// bearer token can be sent; no polling), demand over time as a stacked uPlot chart, a date
// range that scopes every panel, a baseline scenario shown side by side with the difference,
// CSV downloads of what is shown, a ticker, a trace viewer and a form to post a signal. The
// layers, their quantities and units come from GET /v1/topology.
'use strict';

(() => {
  const TICKER_MAX = 60;
  const TOKEN_KEY = 'cascade.token';
  const INJECTED = 'injected:'; // row keys of demand that arrived as a signal at that layer
  const CHART_GROUPS = 7; // groups drawn one by one; the rest are summed as "other"
  const PALETTE = ['#3672c0', '#c27a12', '#138a79', '#b3261e', '#7658c4', '#55902f', '#836550', '#8a8f98'];

  // What each layer is about, in plain words (presentation only; the layers are the API's).
  const ABOUT = {
    application: 'apps and their users',
    model: 'tokens the models serve',
    infrastructure: 'compute it takes',
    chips: 'accelerators, per kind',
    energy: 'datacentre power',
    grid: 'generation and emissions',
  };

  const EXAMPLE = {
    specversion: '1.0',
    type: 'cascade.signal.adoption.v1',
    source: '/cascade/web',
    data: {
      app: 'chat-assistant',
      category: 'chat',
      region: 'us',
      users_delta: 2500000,
    },
  };

  const state = {
    topo: null, // GET /v1/topology
    scenario: '',
    baseline: '', // scenario compared with; '' none
    from: '', // first day of the range, YYYY-MM-DD; '' from the beginning
    to: '', // last day of the range (inclusive); '' no end
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    sides: {}, // scenario → its totals, kept live
    feeds: [], // AbortControllers of the running feeds
    generation: 0, // bumped on every refresh; answers of older ones are dropped
    trace: null, // {id, corr} of the tree on show
    bandText: {}, // last text of each band's total, to flash changes
    series: null, // the series on show
  };

  const $ = (sel, root = document) => root.querySelector(sel);
  const enc = encodeURIComponent;

  // el builds an element; attributes are set as attributes, children appended as nodes or text.
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids.flat()) {
      if (k === undefined || k === null || k === false) continue;
      e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }

  // ---- numbers -------------------------------------------------------------------------

  const PREFIXES = [[1e24, 'Y'], [1e21, 'Z'], [1e18, 'E'], [1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];

  function three(x) {
    if (x >= 99.95) return x.toFixed(0);
    if (x >= 9.995) return x.toFixed(1);
    return x.toFixed(2);
  }

  const SUPERSCRIPT = { '-': '⁻', 0: '⁰', 1: '¹', 2: '²', 3: '³', 4: '⁴', 5: '⁵', 6: '⁶', 7: '⁷', 8: '⁸', 9: '⁹' };

  // sci writes a very large or small magnitude as 3.94×10⁻⁴.
  function sci(a) {
    const [m, e] = a.toExponential(2).split('e');
    return m + '×10' + e.replace('+', '').replace(/./g, (c) => SUPERSCRIPT[c] || c);
  }

  // num formats a value with three significant digits and an SI prefix: 1.23e9 → "1.23 G".
  function num(v, signed) {
    if (typeof v !== 'number' || !Number.isFinite(v)) return '—';
    const a = Math.abs(v);
    const sign = v < 0 ? '−' : signed && v > 0 ? '+' : '';
    if (a < 1e-12) return '0'; // rounding noise of sums that cancel out
    if (a >= 1e27) return sign + sci(a);
    for (const [f, p] of PREFIXES) {
      if (a >= f * 0.9995) return sign + three(a / f) + '\u202f' + p;
    }
    if (Number.isInteger(a)) return sign + String(a);
    if (a >= 1) return sign + three(a);
    if (a >= 0.001) return sign + String(Number(a.toPrecision(3)));
    return sign + sci(a);
  }

  function exact(v, unit) {
    return (typeof v === 'number' ? v.toPrecision(6).replace(/\.?0+(e|$)/, '$1') : String(v)) + ' ' + unit;
  }

  // qty is a number with its unit: <span class=q><span class=v>1.23 G</span> <span class=u>tokens/day</span></span>.
  function qty(v, unit, signed) {
    return el('span', { class: 'q', title: exact(v, unit) }, el('span', { class: 'v' }, num(v, signed)), ' ', el('span', { class: 'u' }, unit));
  }

  // ---- API -----------------------------------------------------------------------------

  let tokenWait = null;

  // askToken shows the token form and resolves once the user gave one.
  function askToken(message) {
    if (!tokenWait) {
      tokenWait = new Promise((resolve) => {
        const form = $('#auth');
        form.hidden = false;
        $('#auth-error').textContent = message;
        $('#token').focus();
        form.onsubmit = (e) => {
          e.preventDefault();
          state.token = $('#token').value.trim();
          sessionStorage.setItem(TOKEN_KEY, state.token);
          form.hidden = true;
          tokenWait = null;
          resolve();
        };
      });
    }
    return tokenWait;
  }

  // api fetches a /v1/ URL with the bearer token, asking for one and retrying on 401.
  async function api(path, init = {}) {
    for (;;) {
      const headers = new Headers(init.headers || {});
      if (state.token) headers.set('Authorization', 'Bearer ' + state.token);
      const res = await fetch(path, { ...init, headers });
      if (res.status !== 401) return res;
      await askToken(state.token ? 'That token was not accepted; try again.' : '');
    }
  }

  // errorOf is the message of a failed response: the API's {"error": …}, else its status.
  async function errorOf(res) {
    const text = await res.text().catch(() => '');
    try {
      const msg = JSON.parse(text).error;
      if (msg) return String(msg);
    } catch {
      /* not JSON */
    }
    const type = res.headers.get('Content-Type') || '';
    const plain = type.startsWith('text/plain') ? text.trim().slice(0, 200) : '';
    return plain || `HTTP ${res.status} ${res.statusText}`.trim();
  }


  // ---- topology ------------------------------------------------------------------------

  const title = (s) => s.charAt(0).toUpperCase() + s.slice(1);

  function layerSpec(name) {
    return state.topo.layers.find((l) => l.layer === name);
  }

  // layerOf is the layer an event type belongs to: the layer its demand is placed on, or the
  // layer its signal enters.
  function layerOf(type) {
    if (!state.topo) return '';
    const l = state.topo.layers.find((s) => s.demand === type || s.signals.includes(type));
    return l ? l.layer : '';
  }

  // isKinds says a layer's rows are kinds that are never summed (accelerators).
  const isKinds = (spec) => spec.key === 'accelerator';

  // keyLabel is a row key in plain words: demand injected as a signal says so.
  function keyLabel(k) {
    return k.startsWith(INJECTED) ? `${k.slice(INJECTED.length)}, injected at this layer` : k;
  }

  async function loadTopology() {
    const res = await api('/v1/topology');
    if (!res.ok) throw new Error(await errorOf(res));
    state.topo = await res.json();
    buildBands();
    buildRegionsHead();
    buildChartControls();
  }

  function buildBands() {
    const terminal = state.topo.layers.filter((l) => !l.emits);
    const cake = state.topo.layers.filter((l) => l.emits);
    const band = (l, tag) => el(tag, { id: 'band-' + l.layer, class: 'band' + (tag === 'div' ? ' below' : ''), 'data-layer': l.layer, role: tag === 'div' ? 'group' : null, 'aria-label': tag === 'div' ? title(l.layer) : null },
      el('div', { class: 'name' }, el('h3', {}, title(l.layer)), el('p', {}, ABOUT[l.layer] || l.quantities.map((q) => q.unit).join(', '))),
      el('div', { class: 'figures' }, el('div', { class: 'total' }, '—'), el('div', { class: 'sub' }), el('div', { class: 'cmp' })),
      el('ul', { class: 'detail', 'aria-label': l.layer + ' by ' + (l.key || 'key') }));
    $('#bands').replaceChildren(...cake.map((l) => band(l, 'li')));
    $('#below').replaceChildren(...terminal.map((l) => band(l, 'div')));
  }

  // columns are the region table's: every quantity of every layer with a feed; a layer whose
  // rows are kinds has one column listing them.
  function columns() {
    const out = [];
    for (const l of state.topo.layers) {
      if (!l.feed) continue;
      if (isKinds(l)) {
        out.push({ layer: l.layer, name: l.quantities[0].name, unit: l.quantities[0].unit, kinds: true });
        continue;
      }
      for (const q of l.quantities) out.push({ layer: l.layer, name: q.name, unit: q.unit });
    }
    for (const c of out) c.label = `${title(c.layer)}, ${c.unit}`;
    return out;
  }

  function buildRegionsHead() {
    $('#regions thead tr').replaceChildren(el('th', { scope: 'col' }, 'Region'),
      ...columns().map((c) => el('th', { scope: 'col', 'data-layer': c.layer }, title(c.layer), ' ', el('span', {}, c.unit))));
  }

  // ---- numbers shown side by side ------------------------------------------------------

  function pct(diff, base) {
    if (Math.abs(base) < 1e-12) return Math.abs(diff) < 1e-12 ? '0%' : 'new';
    const p = (100 * diff) / Math.abs(base);
    return (p > 0 ? '+' : p < 0 ? '−' : '') + Math.abs(p).toFixed(Math.abs(p) >= 10 ? 0 : 1) + '%';
  }

  // netMark marks a negative value as a net reduction, in words.
  function netMark(v) {
    return v < 0 && Math.abs(v) >= 1e-12 ? el('span', { class: 'net' }, 'net reduction') : null;
  }

  // cmp is the baseline's value, the difference and the percentage: "vs base 1.2 G · +0.3 G (+25%)".
  function cmp(v, b, unit) {
    // Two sums of the same demand can differ in their last bits (rounding noise): below a
    // relative 1e-12 the difference is shown as none.
    const d = Math.abs(v - b) <= 1e-12 * Math.max(Math.abs(v), Math.abs(b)) ? 0 : v - b;
    return el('span', { class: 'cmp-q' + (d < 0 ? ' down' : d > 0 ? ' up' : ''), title: `${state.baseline}: ${exact(b, unit)}; difference ${exact(d, unit)}` },
      el('span', { class: 'vs' }, `${state.baseline} ${num(b)}`), el('span', { class: 'sep' }, ' · '),
      el('span', { class: 'diff' }, `${num(d, true)} (${pct(d, b)})`));
  }

  // ---- range ---------------------------------------------------------------------------

  function nextDay(day) {
    const d = new Date(day + 'T00:00:00Z');
    d.setUTCDate(d.getUTCDate() + 1);
    return d.toISOString().slice(0, 10);
  }

  // rangeQuery is the since/until parameters of the range: [from, the day after to).
  function rangeQuery() {
    let q = '';
    if (state.from) q += `&since=${state.from}`;
    if (state.to) q += `&until=${nextDay(state.to)}`;
    return q;
  }

  function inRange(t) {
    const ms = Date.parse(t);
    if (Number.isNaN(ms)) return false;
    if (state.from && ms < Date.parse(state.from + 'T00:00:00Z')) return false;
    if (state.to && ms >= Date.parse(nextDay(state.to) + 'T00:00:00Z')) return false;
    return true;
  }

  function rangeText() {
    if (!state.from && !state.to) {
      const s = state.series;
      return s && s.series.length ? `whole history: ${s.since.slice(0, 10)} to ${s.until.slice(0, 10)} (exclusive)` : 'whole history';
    }
    return `${state.from || 'the beginning'} to ${state.to || 'now'}`;
  }

  function readRange() {
    state.from = $('#since').value;
    state.to = $('#until').value;
    if (state.from && state.to && state.to < state.from) {
      $('#range-text').textContent = 'the range ends before it starts';
      $('#range-text').classList.add('error');
      return false;
    }
    $('#range-text').classList.remove('error');
    return true;
  }

  // ---- scenarios -----------------------------------------------------------------------

  async function loadScenarios() {
    const url = new URLSearchParams(location.search);
    const want = url.get('scenario') || 'base';
    let list = [];
    try {
      const res = await api('/v1/scenarios');
      if (res.ok) list = await res.json();
    } catch {
      /* the selector keeps the wanted scenario */
    }
    const names = list.map((s) => s.scenario);
    if (!names.includes(want)) names.unshift(want);
    const sel = $('#scenario');
    sel.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
    sel.value = want;
    sel.coef = Object.fromEntries(list.map((s) => [s.scenario, s.coefversion]));
    const base = $('#baseline');
    base.replaceChildren(el('option', { value: '' }, 'no baseline'), ...names.map((n) => el('option', { value: n }, n)));
    base.value = names.includes(url.get('vs')) ? url.get('vs') : '';
    $('#since').value = url.get('from') || '';
    $('#until').value = url.get('to') || '';
  }

  // remember keeps the view's choices in the address, so that a link opens the same view.
  function remember() {
    const url = new URL(location.href);
    for (const [k, v, d] of [['scenario', state.scenario, 'base'], ['vs', state.baseline, ''], ['from', state.from, ''], ['to', state.to, '']]) {
      if (v === d) url.searchParams.delete(k);
      else url.searchParams.set(k, v);
    }
    history.replaceState(null, '', url);
  }

  function choose() {
    if (!readRange()) return;
    state.scenario = $('#scenario').value;
    state.baseline = $('#baseline').value;
    const coef = ($('#scenario').coef || {})[state.scenario];
    $('#coefversion').textContent = coef ? 'coefficients ' + coef : '';
    remember();
    refresh(true);
  }

  // ---- totals: a snapshot from the view, then the feed after its position ---------------

  // Side is one scenario's rows by layer, region and key.
  function newSide(scenario) {
    return { scenario, rows: new Map(), events: 0, position: '' };
  }

  const rowKey = (layer, region, key) => layer + '\u0000' + region + '\u0000' + key;

  // addQuantity adds to a quantity's sum. A sum that cancels out to rounding noise (a
  // retraction minus what it retracts) is snapped to zero.
  function addQuantity(qs, name, value, unit) {
    const cur = qs.get(name) || { value: 0, unit, scale: 0 };
    cur.value += value;
    cur.scale = Math.max(cur.scale, Math.abs(value), Math.abs(cur.value));
    if (Math.abs(cur.value) < cur.scale * 1e-9) cur.value = 0;
    qs.set(name, cur);
  }

  function addRow(side, layer, region, key, quantities, events) {
    const k = rowKey(layer, region, key);
    let r = side.rows.get(k);
    if (!r) {
      r = { layer, region, key, qs: new Map(), events: 0 };
      side.rows.set(k, r);
    }
    for (const q of quantities) addQuantity(r.qs, q.name, q.value, q.unit);
    r.events += events;
    side.events += events;
  }

  async function loadSide(scenario, gen) {
    const res = await api(`/v1/totals?by=region&scenario=${enc(scenario)}${rangeQuery()}`);
    if (!res.ok) throw new Error(`totals of ${scenario}: ${await errorOf(res)}`);
    const body = await res.json();
    if (gen !== state.generation) return null;
    const side = newSide(scenario);
    side.position = body.position || '';
    side.live = !!body.position;
    for (const r of body.rows || []) addRow(side, r.layer, r.region || '', r.key, r.quantities || [], r.events || 0);
    side.events = body.events;
    return side;
  }

  // applyEvent adds a feed event's demand to the side's rows, as the view sums it.
  function applyEvent(side, ev) {
    const layer = layerOf(ev.type);
    const spec = layer && layerSpec(layer);
    if (!spec || !inRange(ev.time)) return false;
    const d = ev.data || {};
    const key = String(d[spec.key] || 'unspecified');
    const qs = [];
    for (const [name, v] of Object.entries(d)) {
      if (typeof v !== 'number') continue;
      const known = spec.quantities.find((q) => q.name === name);
      const held = side.rows.get(rowKey(layer, ev.subject, key));
      const unit = known ? known.unit : held && held.qs.has(name) ? held.qs.get(name).unit : '';
      if (unit) qs.push({ name, value: v, unit });
    }
    addRow(side, layer, ev.subject, key, qs, 1);
    return true;
  }

  // refresh reads the totals of the scenario (and the baseline) as of the view, renders them,
  // follows each one's feed from the position they are as of, and reloads the chart.
  async function refresh(clearTicker) {
    const gen = ++state.generation;
    for (const f of state.feeds) f.abort();
    state.feeds = [];
    state.bandText = {};
    if (clearTicker) {
      $('#ticker').replaceChildren();
      $('#ticker-empty').hidden = false;
      state.trace = null;
      $('#trace-tree').replaceChildren(el('p', { class: 'empty' }, 'Enter an event id, or click one in the live events.'));
    }
    const names = [...new Set([state.scenario, state.baseline].filter(Boolean))];
    document.body.dataset.ready = 'false';
    const drawn = loadSeries();
    try {
      const sides = await Promise.all(names.map((n) => loadSide(n, gen)));
      if (gen !== state.generation) return;
      state.sides = Object.fromEntries(sides.map((s) => [s.scenario, s]));
      render();
      for (const s of sides) startFeed(s, gen);
    } catch (e) {
      $('#events-count').textContent = 'totals unavailable: ' + e.message;
    }
    await drawn;
    if (gen === state.generation) document.body.dataset.ready = 'true'; // every panel shows this choice
  }

  let renderTimer = null;

  // renderSoon renders at most every 150 ms while events stream in.
  function renderSoon() {
    if (!renderTimer) renderTimer = setTimeout(() => { renderTimer = null; render(); }, 150);
  }

  // aggregate sums a side's rows per layer (with per-key sums) and per region.
  function aggregate(side) {
    const layers = {};
    const regions = new Map();
    const blank = () => Object.fromEntries(state.topo.layers.map((l) => [l.layer, { qs: new Map(), keys: new Map(), events: 0 }]));
    Object.assign(layers, blank());
    for (const r of side ? side.rows.values() : []) {
      const a = layers[r.layer];
      if (!a) continue;
      const name = r.region || '(all)';
      if (!regions.has(name)) regions.set(name, blank());
      for (const into of [a, regions.get(name)[r.layer]]) {
        into.events += r.events;
        if (!into.keys.has(r.key)) into.keys.set(r.key, new Map());
        for (const [n, q] of r.qs) {
          addQuantity(into.qs, n, q.value, q.unit);
          addQuantity(into.keys.get(r.key), n, q.value, q.unit);
        }
      }
    }
    return { layers, regions };
  }

  const valueOf = (m, name) => (m && m.get(name) ? m.get(name).value : 0);

  function render() {
    if (!state.topo) return;
    const side = state.sides[state.scenario];
    const agg = aggregate(side);
    const vs = state.baseline ? aggregate(state.sides[state.baseline]) : null;
    $('#events-count').textContent = side ? `${num(side.events)} stored events in the range` : '';
    for (const spec of state.topo.layers) renderBand(spec, agg.layers[spec.layer], vs && vs.layers[spec.layer]);
    renderRegions(agg.regions, vs && vs.regions);
    document.body.classList.toggle('vs', !!state.baseline);
    const note = $('#compare-note');
    note.hidden = !state.baseline;
    note.textContent = state.baseline ? `Each figure: ${state.scenario}, then ${state.baseline} and the difference ${state.scenario} − ${state.baseline} (percent of ${state.baseline}).` : '';
    document.body.dataset.totals = String(Date.now());
  }

  function eventsText(n) {
    return n === 1 ? '1 event' : `${num(n)} events`;
  }

  // renderBand shows a layer's headline quantities (its first two), the rest under them, and
  // the largest keys; a layer whose rows are kinds shows each kind, never their sum.
  function renderBand(spec, a, b) {
    const band = $('#band-' + spec.layer);
    if (!band) return;
    let main;
    let sub = [];
    let keyed;
    if (isKinds(spec)) {
      const q = spec.quantities[0];
      const kinds = [...new Set([...a.keys.keys(), ...(b ? b.keys.keys() : [])])]
        .map((k) => [k, valueOf(a.keys.get(k), q.name), b ? valueOf(b.keys.get(k), q.name) : 0])
        .filter(([, v, w]) => v !== 0 || w !== 0)
        .sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]));
      main = kinds.length ? kinds.slice(0, 3).map(([k, v, w]) => [v, keyLabel(k), w]) : [[0, q.unit, 0]];
      if (kinds.length > 3) sub.push(`${kinds.length} kinds, never summed`);
      keyed = kinds.slice(3).map(([k, v]) => [k, v, q.unit]);
    } else {
      const unitOf = (n) => spec.quantities.find((q) => q.name === n).unit;
      main = spec.quantities.slice(0, 2).map((q) => [valueOf(a.qs, q.name), unitOf(q.name), b ? valueOf(b.qs, q.name) : 0]);
      sub = spec.quantities.slice(2).map((q) => `${num(valueOf(a.qs, q.name))} ${q.unit}`);
      const k = spec.quantities[0];
      keyed = [...a.keys.entries()].map(([key, m]) => [key, valueOf(m, k.name), k.unit]);
    }
    sub.push(eventsText(a.events));
    const total = $('.total', band);
    total.replaceChildren(...main.map(([v, unit]) => el('span', { class: 'q-wrap' }, qty(v, unit, spec.layer === 'application'), netMark(v))));
    $('.sub', band).textContent = sub.join(' · ');
    $('.cmp', band).replaceChildren(...(b ? main.map(([v, unit, w]) => cmp(v, w, unit)) : []));
    const floor = Math.max(1e-12, 1e-9 * Math.max(0, ...keyed.map(([, v]) => Math.abs(v))));
    const list = keyed.filter(([, v]) => Math.abs(v) >= floor).sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]));
    const shown = list.slice(0, 4).map(([k, v, u]) =>
      el('li', { title: exact(v, u) }, el('span', { class: 'k' }, keyLabel(k)), el('span', { class: 'v' + (v < 0 ? ' neg' : '') }, num(v))));
    if (list.length > 4) shown.push(el('li', {}, el('span', { class: 'k' }, `+ ${list.length - 4} more`)));
    $('.detail', band).replaceChildren(...shown);
    const text = total.textContent;
    const before = state.bandText[spec.layer];
    state.bandText[spec.layer] = text;
    if (before !== undefined && before !== text) {
      band.classList.remove('changed');
      void band.offsetWidth; // restart the animation
      band.classList.add('changed');
    }
  }

  let regionNames = null;
  try {
    regionNames = new Intl.DisplayNames(['en'], { type: 'region' });
  } catch {
    regionNames = null;
  }

  function regionName(code) {
    if (code === 'world') return 'World';
    if (!regionNames || !/^[a-z]{2}$/.test(code)) return '';
    try {
      const n = regionNames.of(code.toUpperCase());
      return n && n.toLowerCase() !== code ? n : '';
    } catch {
      return '';
    }
  }

  // regionTable is the table as shown, row by row: the region and, per column, the value
  // (per kind for kinds) and the baseline's.
  let regionTable = [];

  function renderRegions(regions, vs) {
    const cols = columns();
    const names = [...new Set([...regions.keys(), ...(vs ? vs.keys() : [])])];
    const sortBy = cols[cols.length - 1];
    const get = (m, name, c) => (m && m.get(name) ? m.get(name)[c.layer] : null);
    names.sort((x, y) => valueOf((get(regions, y, sortBy) || {}).qs, sortBy.name) - valueOf((get(regions, x, sortBy) || {}).qs, sortBy.name) || x.localeCompare(y));
    regionTable = names.map((code) => ({
      code,
      cells: cols.map((c) => {
        const a = get(regions, code, c);
        const b = get(vs, code, c);
        if (!c.kinds) return { c, parts: [{ key: '', v: valueOf(a && a.qs, c.name), w: valueOf(b && b.qs, c.name) }] };
        const keys = [...new Set([...(a ? a.keys.keys() : []), ...(b ? b.keys.keys() : [])])];
        const parts = keys.map((k) => ({ key: k, v: valueOf(a && a.keys.get(k), c.name), w: valueOf(b && b.keys.get(k), c.name) }))
          .filter((p) => p.v !== 0 || p.w !== 0)
          .sort((x, y) => Math.abs(y.v) - Math.abs(x.v));
        return { c, parts };
      }),
    }));
    const part = (p, unit, kinds) => el('span', { class: 'part' + (p.v < 0 ? ' neg' : '') },
      el('span', { title: exact(p.v, kinds ? p.key : unit) }, kinds ? `${num(p.v)} ${keyLabel(p.key)}` : num(p.v)),
      p.v < 0 ? el('span', { class: 'net', title: 'net reduction' }, 'net reduction') : null,
      vs ? cmp(p.v, p.w, unit) : null);
    const rows = regionTable.map(({ code, cells }) => el('tr', { 'data-region': code },
      el('th', { scope: 'row', class: 'region-cell' }, el('span', { class: 'code' }, code), el('span', { class: 'name' }, regionName(code))),
      cells.map(({ c, parts }) => el('td', { 'data-label': c.label, class: c.kinds ? 'kinds-cell' : null },
        c.kinds && !parts.length ? '0' : el('span', { class: 'kinds' }, parts.map((p) => part(p, c.unit, c.kinds)))))));
    $('#regions tbody').replaceChildren(...rows);
    $('#regions-note').textContent = 'totals of the stored events in the range, per region' + (vs ? ` · below each: ${state.baseline} and the difference · ▼ net reduction` : '');
    $('#regions-empty').hidden = rows.length > 0;
    $('#regions').hidden = rows.length === 0;
  }

  // ---- CSV -----------------------------------------------------------------------------

  function csvField(v) {
    const s = String(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  // download saves lines as a CSV file; the button notes what it saved (for tests and
  // screen readers alike).
  function download(button, name, lines) {
    const text = lines.map((l) => l.map(csvField).join(',')).join('\r\n') + '\r\n';
    const url = URL.createObjectURL(new Blob([text], { type: 'text/csv;charset=utf-8' }));
    const a = el('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    button.dataset.rows = String(lines.length - 1);
    button.dataset.head = lines[0].join(',');
    button.dataset.first = lines.length > 1 ? lines[1].join(',') : '';
  }

  function rangeName() {
    return (state.from || 'start') + '_' + (state.to || 'end');
  }

  function regionsCSV() {
    const head = ['region', 'layer', 'quantity', 'key', 'unit', state.scenario];
    if (state.baseline) head.push(state.baseline, 'difference', 'percent');
    const lines = [head];
    for (const { code, cells } of regionTable) {
      for (const { c, parts } of cells) {
        for (const p of parts) {
          const line = [code, c.layer, c.name, p.key, c.unit, p.v];
          if (state.baseline) line.push(p.w, p.v - p.w, pct(p.v - p.w, p.w));
          lines.push(line);
        }
      }
    }
    download($('#regions-csv'), `cascade-${state.scenario}${state.baseline ? '-vs-' + state.baseline : ''}-regions-${rangeName()}.csv`, lines);
  }

  function chartCSV() {
    const s = state.series;
    if (!s) return;
    const head = ['step_start', s.by, 'change', 'level', 'unit'];
    if (s.vs) head.push(s.vs + '_level', 'difference', 'percent');
    const lines = [head];
    for (const g of chartGroups(s)) {
      g.points.forEach((p, i) => {
        const line = [s.series[0].points[i].t, g.key, p.change, p.level, s.unit];
        if (s.vs) line.push(p.vs, p.level - p.vs, pct(p.level - p.vs, p.vs));
        lines.push(line);
      });
    }
    download($('#chart-csv'), `cascade-${s.scenario}${s.vs ? '-vs-' + s.vs : ''}-${s.layer}-${s.quantity}-by-${s.by}-${s.step}-${rangeName()}.csv`, lines);
  }

  // ---- demand over time ----------------------------------------------------------------

  function buildChartControls() {
    const layers = state.topo.layers.filter((l) => l.quantities.length);
    const ls = $('#chart-layer');
    ls.replaceChildren(...layers.map((l) => el('option', { value: l.layer }, title(l.layer))));
    const terminal = layers.find((l) => !l.emits);
    ls.value = terminal ? terminal.layer : layers[0].layer;
    $('#chart-step').replaceChildren(...state.topo.steps.map((s) => el('option', { value: s }, s)));
    $('#chart-step').value = state.topo.steps.includes('month') ? 'month' : state.topo.steps[0];
    chartLayerChanged();
  }

  function chartLayerChanged() {
    const spec = layerSpec($('#chart-layer').value);
    $('#chart-quantity').replaceChildren(...spec.quantities.map((q) => el('option', { value: q.name }, q.unit)));
    $('#chart-by').replaceChildren(el('option', { value: 'region' }, 'region'), el('option', { value: spec.key }, spec.key));
    if (isKinds(spec)) $('#chart-by').value = spec.key; // accelerators are never summed across kinds
  }

  let seriesGen = 0;
  let seriesTimer = null;

  // seriesSoon reloads the chart once the events streaming in have paused for a moment.
  function seriesSoon() {
    clearTimeout(seriesTimer);
    seriesTimer = setTimeout(loadSeries, 1200);
  }

  async function loadSeries() {
    if (!state.topo) return;
    const gen = ++seriesGen;
    const q = `layer=${enc($('#chart-layer').value)}&quantity=${enc($('#chart-quantity').value)}&by=${enc($('#chart-by').value)}` +
      `&step=${enc($('#chart-step').value)}&scenario=${enc(state.scenario)}${state.baseline ? '&vs=' + enc(state.baseline) : ''}${rangeQuery()}`;
    try {
      const res = await api('/v1/series?' + q);
      if (!res.ok) throw new Error(await errorOf(res));
      const s = await res.json();
      if (gen !== seriesGen) return;
      state.series = s;
      drawChart(s);
    } catch (e) {
      if (gen !== seriesGen) return;
      state.series = null;
      drawChart(null, e.message);
    }
    $('#range-text').textContent = rangeText();
  }

  // chartGroups are the groups as drawn: the largest ones and the rest summed as "other",
  // each point with its change, level and (with a baseline) the baseline's level.
  function chartGroups(s) {
    const size = (ks) => Math.max(0, ...ks.points.map((p) => Math.max(Math.abs(p.level), Math.abs(p.vs_level || 0))));
    const sorted = [...s.series].sort((x, y) => size(y) - size(x) || x.key.localeCompare(y.key));
    const pick = (ks) => ks.points.map((p) => ({ change: p.change, level: p.level, vs: p.vs_level || 0 }));
    const out = sorted.slice(0, CHART_GROUPS).map((ks) => ({ key: keyLabel(ks.key), points: pick(ks) }));
    const rest = sorted.slice(CHART_GROUPS);
    if (rest.length) {
      const pts = pick(rest[0]).map(() => ({ change: 0, level: 0, vs: 0 }));
      for (const ks of rest) {
        pick(ks).forEach((p, i) => { pts[i].change += p.change; pts[i].level += p.level; pts[i].vs += p.vs; });
      }
      out.push({ key: `other (${rest.length})`, points: pts });
    }
    return out;
  }

  let plot = null;

  function chartWidth() {
    return Math.max(240, $('#chart').clientWidth);
  }

  function chartHeight() {
    return innerWidth < 600 ? 240 : 320;
  }

  // drawChart draws the series stacked by group (running levels), and with a baseline its
  // total dashed and the difference dotted; under it, the last step side by side.
  function drawChart(s, error) {
    const box = $('#chart');
    if (plot) {
      plot.destroy();
      plot = null;
    }
    box.replaceChildren();
    const groups = s ? chartGroups(s) : [];
    box.dataset.points = s && s.series.length ? String(s.series[0].points.length) : '0';
    box.dataset.series = String(groups.length);
    $('#chart-empty').hidden = groups.length > 0 && !error;
    $('#chart-empty').textContent = error ? 'Chart unavailable: ' + error : 'No demand of this layer in this range yet.';
    $('#chart-summary').replaceChildren();
    if (!groups.length || typeof uPlot === 'undefined') return;
    const xs = s.series[0].points.map((p) => Date.parse(p.t) / 1000);
    const n = xs.length;
    const data = [xs];
    const stack = new Array(n).fill(0);
    for (const g of groups) {
      g.points.forEach((p, i) => { stack[i] += p.level; });
      data.push(stack.slice());
    }
    const css = getComputedStyle(document.body);
    const ink = css.getPropertyValue('--muted').trim() || '#5d646e';
    const line = css.getPropertyValue('--line').trim() || '#e2ded6';
    const fmt = (v) => (v === null || v === undefined ? '—' : num(v));
    const series = [{ label: s.step }];
    groups.forEach((g, i) => {
      const color = PALETTE[i % PALETTE.length];
      series.push({ label: g.key, stroke: color, fill: color + 'b0', width: 1, points: { show: false }, value: (u, v, si, idx) => (idx === null || idx === undefined ? '—' : fmt(groups[si - 1].points[idx].level)) });
    });
    const bands = groups.slice(1).map((g, i) => ({ series: [i + 2, i + 1], fill: PALETTE[(i + 1) % PALETTE.length] + 'b0' }));
    const total = data[data.length - 1];
    if (s.vs) {
      const vsTotal = xs.map((_, i) => groups.reduce((t, g) => t + g.points[i].vs, 0));
      data.push(vsTotal, total.map((v, i) => v - vsTotal[i]));
      series.push({ label: `${s.vs} (baseline) total`, stroke: css.getPropertyValue('--ink').trim() || '#1d2127', width: 2, dash: [6, 4], points: { show: false }, value: (u, v) => fmt(v) });
      series.push({ label: `difference ${s.scenario} − ${s.vs}`, stroke: css.getPropertyValue('--bad').trim() || '#b3261e', width: 2, dash: [2, 3], points: { show: false }, value: (u, v) => fmt(v) });
    }
    // the first band fills down to zero; each further one between it and the one below
    for (let i = 2; i <= groups.length; i++) series[i].fill = undefined;
    const opts = {
      width: chartWidth(),
      height: chartHeight(),
      series,
      bands,
      legend: { live: true },
      cursor: { points: { show: false } },
      scales: { x: { time: true } },
      axes: [
        { stroke: ink, grid: { stroke: line, width: 1 }, ticks: { stroke: line } },
        { stroke: ink, grid: { stroke: line, width: 1 }, ticks: { stroke: line }, size: 56, values: (u, vals) => vals.map((v) => num(v)) },
      ],
    };
    plot = new uPlot(opts, data, box);
    box.dataset.last = String(total[n - 1]);
    box.setAttribute('aria-label', `${s.layer} ${s.quantity} in ${s.unit} by ${s.by}, ${s.step} by ${s.step}, ${n} steps from ${s.since.slice(0, 10)}; at the end ${num(total[n - 1])} ${s.unit}`);
    const end = s.series[0].points[n - 1].t.slice(0, 10);
    const last = total[n - 1];
    const summary = [el('span', {}, `At the step of ${end}: `), el('strong', {}, `${s.scenario} ${num(last)} ${s.unit}`), netMark(last)];
    if (s.vs) {
      const b = data[data.length - 2][n - 1];
      summary.push(' · ', cmp(last, b, s.unit));
    }
    $('#chart-summary').replaceChildren(...summary.filter(Boolean));
  }

  // ---- feed ----------------------------------------------------------------------------

  function setStatus(feed, text) {
    document.body.dataset.feed = feed;
    $('#status .text').textContent = text;
  }

  function startFeed(side, gen) {
    const ctl = new AbortController();
    state.feeds.push(ctl);
    runFeed(side, gen, ctl.signal);
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  // runFeed reads a scenario's feeds after the position its totals are as of, so that the
  // totals plus the events make the totals at any later moment, reconnecting with
  // Last-Event-ID. A view that holds nothing yet has no position: the feed then starts at the
  // beginning of the log, all of which its totals do not hold.
  async function runFeed(side, gen, signal) {
    const main = side.scenario === state.scenario;
    const layers = state.topo.layers.filter((l) => l.feed).map((l) => l.layer).join(',');
    let backoff = 500;
    while (!signal.aborted) {
      try {
        const headers = { Accept: 'text/event-stream' };
        let from = '';
        if (side.position) headers['Last-Event-ID'] = side.position;
        else if (side.live !== false) from = '&since=1970-01-01T00:00:00Z';
        const res = await api(`/v1/feeds?layers=${layers}&scenario=${enc(side.scenario)}${from}`, { headers, signal, cache: 'no-store' });
        if (!res.ok) throw new Error(await errorOf(res));
        if (main) setStatus('live', 'live');
        backoff = 500;
        await readSSE(res.body, (id, type, data) => onFeedEvent(side, gen, id, data));
        if (signal.aborted) return;
        if (main) setStatus('reconnecting', 'reconnecting…');
      } catch (e) {
        if (signal.aborted) return;
        if (main) setStatus(backoff >= 8000 ? 'offline' : 'reconnecting', backoff >= 8000 ? 'offline, retrying' : 'reconnecting…');
        console.warn('cascade feed:', e);
      }
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  function onFeedEvent(side, gen, id, data) {
    if (gen !== state.generation) return;
    if (id) {
      side.position = id;
      side.live = true;
    }
    let ev;
    try {
      ev = JSON.parse(data);
    } catch {
      return;
    }
    if (!applyEvent(side, ev)) return;
    renderSoon();
    if (layerOf(ev.type) === $('#chart-layer').value) seriesSoon();
    if (side.scenario !== state.scenario) return;
    addTicker(ev);
    if (state.trace && state.trace.corr && ev.correlationid === state.trace.corr) refreshTraceSoon();
  }

  function clock(t) {
    const d = new Date(t);
    if (Number.isNaN(d.getTime())) return '';
    return d.toLocaleTimeString('en-GB', { hour12: false });
  }

  function addTicker(ev) {
    const layer = layerOf(ev.type);
    const spec = layerSpec(layer);
    const d = ev.data || {};
    const label = [d[spec.key], d.workload].filter((v, i, all) => v && all.indexOf(v) === i).join(' ');
    const qs = (isKinds(spec) ? spec.quantities.slice(0, 1) : spec.quantities.slice(0, 2))
      .filter((q) => typeof d[q.name] === 'number').map((q) => [d[q.name], isKinds(spec) && d[spec.key] ? d[spec.key] : q.unit]);
    const li = el('li', { class: 'new', 'data-layer': layer, 'data-id': ev.id },
      el('span', { class: 'what' },
        el('span', { class: 'layer' }, layer || ev.type), ' ',
        el('span', { class: 'region' }, ev.subject), ' ',
        el('span', { class: 'label' }, label)),
      el('time', { datetime: ev.time }, clock(ev.time)),
      el('span', { class: 'qty' }, qs.flatMap(([v, u], i) => [i ? ' · ' : '', el('span', { class: 'pair' + (v < 0 ? ' neg' : ''), title: exact(v, u) + (v < 0 ? ', a net reduction' : '') }, num(v, true), ' ', el('span', { class: 'u' }, u))])),
      el('button', { type: 'button', class: 'id-link', title: 'trace ' + ev.id, 'aria-label': 'trace event ' + ev.id, onclick: () => traceFromUI(ev.id) }, ev.id));
    const ticker = $('#ticker');
    ticker.prepend(li);
    while (ticker.children.length > TICKER_MAX) ticker.lastElementChild.remove();
    $('#ticker-empty').hidden = true;
    setTimeout(() => li.classList.remove('new'), 700);
  }

  // readSSE parses a Server-Sent-Event stream: `id:`, `event:`, `data:` lines, `:` comments,
  // an empty line ends an event.
  async function readSSE(body, onEvent) {
    const reader = body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    let id = null;
    let type = '';
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length) onEvent(id, type || 'message', data.join('\n'));
          id = null;
          type = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue; // comment: keep-alive ping
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? '' : line.slice(colon + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        if (field === 'id') id = v;
        else if (field === 'event') type = v;
        else if (field === 'data') data.push(v);
      }
    }
  }

  // ---- trace ---------------------------------------------------------------------------

  function traceFromUI(id) {
    $('#trace-id').value = id;
    drawTrace(id);
    const reduce = matchMedia('(prefers-reduced-motion: reduce)').matches;
    $('#trace-card').scrollIntoView({ behavior: reduce ? 'auto' : 'smooth', block: 'nearest' });
  }

  let traceTimer = null;

  function refreshTraceSoon() {
    if (traceTimer) return;
    traceTimer = setTimeout(() => {
      traceTimer = null;
      if (state.trace) drawTrace(state.trace.id, true);
    }, 800);
  }

  async function drawTrace(id, quiet) {
    id = String(id || '').trim();
    const box = $('#trace-tree');
    if (!id) {
      box.replaceChildren(el('p', { class: 'empty' }, 'Enter an event id.'));
      return;
    }
    const sc = state.scenario;
    state.trace = { id, corr: state.trace && state.trace.id === id ? state.trace.corr : null };
    if (!quiet) box.setAttribute('aria-busy', 'true');
    try {
      const res = await api(`/v1/trace/${enc(id)}?scenario=${enc(sc)}`);
      if (!state.trace || state.trace.id !== id || sc !== state.scenario) return;
      if (!res.ok) {
        const msg = await errorOf(res);
        box.replaceChildren(el('p', { class: 'error' }, res.status === 404 ? `No event ${id} in scenario ${sc}. ` : '', msg));
        return;
      }
      const body = await res.json();
      if (!state.trace || state.trace.id !== id) return;
      const root = body.root;
      state.trace.corr = (root && root.event && (root.event.correlationid || root.event.id)) || null;
      let count = 0;
      const layers = new Set();
      const walk = (n) => { count++; layers.add(layerOf(n.event && n.event.type)); (n.children || []).forEach(walk); };
      if (root) walk(root);
      box.replaceChildren(
        el('p', { class: 'trace-meta' }, `${count} event${count === 1 ? '' : 's'} across ${layers.size} layer${layers.size === 1 ? '' : 's'}, root signal `, el('code', {}, state.trace.corr || '?')),
        el('ul', { class: 'tree', role: 'tree', 'aria-label': 'trace of ' + id }, renderNode(root, body.focus)));
    } catch (e) {
      box.replaceChildren(el('p', { class: 'error' }, 'Trace failed: ' + e.message));
    } finally {
      box.removeAttribute('aria-busy');
    }
  }

  function renderNode(n, focus) {
    const ev = n.event || {};
    const layer = layerOf(ev.type);
    const head = el('div', { class: 'node-head' + (ev.id === focus ? ' focus' : '') },
      el('span', { class: 'badge' }, layer || ev.type),
      n.label ? el('span', { class: 'label' }, n.label) : null,
      el('span', { class: 'region' }, ev.subject),
      el('span', { class: 'qs' }, (n.quantities || []).map((q) => qty(q.value, q.unit))),
      el('span', { class: 'id', title: ev.type }, ev.id));
    const kids = n.children || [];
    return el('li', { role: 'treeitem', 'data-layer': layer, 'data-id': ev.id, 'aria-expanded': kids.length ? 'true' : null },
      head,
      kids.length ? el('ul', { role: 'group' }, kids.map((c) => renderNode(c, focus))) : null);
  }

  // ---- post a signal -------------------------------------------------------------------

  function contentTypeOf(text) {
    try {
      JSON.parse(text);
      return 'application/json';
    } catch {
      return 'application/x-ndjson';
    }
  }

  async function sendSignal(e) {
    e.preventDefault();
    const out = $('#signal-answer');
    const btn = $('#signal-send');
    const text = $('#signal-json').value;
    btn.disabled = true;
    out.replaceChildren();
    delete out.dataset.id;
    try {
      const res = await api(`/v1/signals?scenario=${enc(state.scenario)}`, {
        method: 'POST',
        headers: { 'Content-Type': contentTypeOf(text) },
        body: text,
      });
      const body = await res.text();
      const lines = [];
      for (const raw of body.split('\n')) {
        if (!raw.trim()) continue;
        try {
          lines.push(JSON.parse(raw));
        } catch {
          lines.push({ error: raw });
        }
      }
      const nodes = lines.map((a) => {
        if (a.id && !a.error) {
          if (!out.dataset.id) out.dataset.id = a.id;
          return el('div', { class: 'line ok' },
            el('span', {}, `line ${a.line}: taken as`), el('code', {}, a.id),
            el('button', { type: 'button', class: 'id-link', onclick: () => traceFromUI(a.id) }, 'trace it'));
        }
        return el('div', { class: 'line bad' },
          el('span', {}, a.line ? `line ${a.line}: ` : `HTTP ${res.status}: `),
          el('span', {}, a.error || JSON.stringify(a)),
          a.field ? el('span', { class: 'muted' }, `field ${a.field}`) : null);
      });
      if (!nodes.length) nodes.push(el('div', { class: 'line bad' }, `HTTP ${res.status}`));
      out.replaceChildren(...nodes);
      out.dataset.status = String(res.status);
      // The signals' own layer (the application's users) is not on the demand feeds: read
      // the totals again, and follow the feeds from their new position.
      if (res.ok || res.status === 207) refresh(false);
    } catch (err) {
      out.replaceChildren(el('div', { class: 'line bad' }, 'Not sent: ' + err.message));
    } finally {
      btn.disabled = false;
    }
  }

  function resetExample() {
    $('#signal-json').value = JSON.stringify(EXAMPLE, null, 2);
  }

  // ---- start ---------------------------------------------------------------------------

  async function main() {
    resetExample();
    $('#signal-form').addEventListener('submit', sendSignal);
    $('#signal-reset').addEventListener('click', resetExample);
    $('#trace-form').addEventListener('submit', (e) => {
      e.preventDefault();
      drawTrace($('#trace-id').value);
    });
    $('#scenario').addEventListener('change', choose);
    $('#baseline').addEventListener('change', choose);
    $('#since').addEventListener('change', choose);
    $('#until').addEventListener('change', choose);
    $('#range').addEventListener('submit', (e) => e.preventDefault());
    $('#range-all').addEventListener('click', () => {
      $('#since').value = '';
      $('#until').value = '';
      choose();
    });
    $('#chart-layer').addEventListener('change', () => { chartLayerChanged(); loadSeries(); });
    for (const id of ['#chart-quantity', '#chart-by', '#chart-step']) $(id).addEventListener('change', loadSeries);
    $('#chart-form').addEventListener('submit', (e) => e.preventDefault());
    $('#chart-csv').addEventListener('click', chartCSV);
    $('#regions-csv').addEventListener('click', regionsCSV);
    let width = innerWidth;
    addEventListener('resize', () => {
      if (plot && (innerWidth !== width || chartWidth() !== plot.width)) plot.setSize({ width: chartWidth(), height: chartHeight() });
      width = innerWidth;
    });
    try {
      await loadTopology();
    } catch (e) {
      $('#events-count').textContent = 'topology unavailable: ' + e.message;
      return;
    }
    await loadScenarios();
    choose();
  }

  main();
})();
