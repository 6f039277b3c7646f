// cascade web page: live totals of the five-layer cake, a ticker of derived events read from
// the Server-Sent-Event feed with fetch streaming (so a bearer token can be sent), a per-region
// breakdown, a scenario selector, a trace viewer and a form to post a signal. No dependencies.
'use strict';

(() => {
  const LAYERS = ['application', 'model', 'infrastructure', 'chips', 'energy', 'grid'];
  const FEED_LAYERS = ['model', 'infrastructure', 'chips', 'energy', 'grid'];
  const TICKER_MAX = 60;
  const TOKEN_KEY = 'cascade.token';

  // Units of every quantity, used when a layer has no rows yet.
  const UNITS = {
    users_delta: 'weekly users',
    tokens_per_day: 'tokens/day',
    flop_per_s: 'FLOP/s',
    units: 'accelerators',
    hbm_gb: 'GB HBM',
    it_mw: 'MW IT',
    facility_mw: 'MW facility',
    avg_mw: 'MW avg',
    generation_mw: 'MW generation',
    twh_per_year: 'TWh/yr',
    co2_t_per_year: 'tCO2/yr',
  };

  // What each band shows: its headline quantities, the smaller ones under them, and the
  // quantity its per-key detail lists.
  const BANDS = {
    model: { main: ['tokens_per_day'], sub: [], key: 'tokens_per_day' },
    infrastructure: { main: ['flop_per_s'], sub: [], key: 'flop_per_s' },
    energy: { main: ['it_mw', 'facility_mw'], sub: [], key: 'facility_mw' },
    grid: { main: ['twh_per_year', 'co2_t_per_year'], sub: ['avg_mw', 'generation_mw'], key: 'twh_per_year' },
  };

  // The headline quantity of a feed event, by type.
  const TICKER = {
    'cascade.demand.model.v1': (d) => ({ label: d.model, qs: [[d.tokens_per_day, 'tokens/day']] }),
    'cascade.demand.infrastructure.v1': (d) => ({ label: d.workload, qs: [[d.flop_per_s, 'FLOP/s']] }),
    'cascade.demand.chips.v1': (d) => ({ label: [d.accelerator, d.workload].filter(Boolean).join(' '), qs: [[d.units, d.accelerator || 'accelerators']] }),
    'cascade.demand.energy.v1': (d) => ({ label: d.workload, qs: [[d.facility_mw, 'MW facility']] }),
    'cascade.demand.grid.v1': (d) => ({ label: d.workload, qs: [[d.twh_per_year, 'TWh/yr'], [d.co2_t_per_year, 'tCO2/yr']] }),
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
    scenario: '',
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    feed: null, // AbortController of the running feed
    lastEventId: '',
    signals: new Set(), // correlation ids seen on the feed since the page opened
    trace: null, // {id, corr} of the tree on show
    bandText: {}, // last text of each band's total, to flash changes
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

  function setStatus(feed, text) {
    document.body.dataset.feed = feed;
    $('#status .text').textContent = text;
  }

  // ---- scenarios -----------------------------------------------------------------------

  async function loadScenarios() {
    const want = new URLSearchParams(location.search).get('scenario') || 'base';
    let list = [];
    try {
      const res = await api('/v1/scenarios');
      if (res.ok) list = await res.json();
    } catch {
      /* the selector keeps the wanted scenario */
    }
    const sel = $('#scenario');
    const names = list.map((s) => s.scenario);
    if (!names.includes(want)) names.unshift(want);
    sel.replaceChildren(...names.map((n) => el('option', { value: n }, n)));
    sel.value = want;
    sel.coef = Object.fromEntries(list.map((s) => [s.scenario, s.coefversion]));
    return want;
  }

  function setScenario(sc) {
    state.scenario = sc;
    const coef = ($('#scenario').coef || {})[sc];
    $('#coefversion').textContent = coef ? 'coefficients ' + coef : '';
    const url = new URL(location.href);
    if (sc === 'base') url.searchParams.delete('scenario');
    else url.searchParams.set('scenario', sc);
    history.replaceState(null, '', url);
    state.signals.clear();
    state.bandText = {};
    state.trace = null;
    $('#ticker').replaceChildren();
    $('#ticker-empty').hidden = false;
    $('#trace-tree').replaceChildren(el('p', { class: 'empty' }, 'Enter an event id, or click one in the live events.'));
    refreshTotals(true);
    startFeed();
  }

  // ---- totals --------------------------------------------------------------------------

  let totalsTimer = null;
  let totalsBusy = false;
  let totalsDirty = false;
  let totalsLast = 0;

  // refreshTotals asks for new totals, at most about once a second.
  function refreshTotals(now) {
    totalsDirty = true;
    if (now) totalsLast = 0;
    pumpTotals();
  }

  function pumpTotals() {
    if (totalsBusy || totalsTimer || !totalsDirty) return;
    const wait = Math.max(0, totalsLast + 1000 - Date.now());
    totalsTimer = setTimeout(async () => {
      totalsTimer = null;
      totalsDirty = false;
      totalsBusy = true;
      totalsLast = Date.now();
      try {
        await loadTotals();
      } catch (e) {
        $('#events-count').textContent = 'totals unavailable: ' + e.message;
      } finally {
        totalsBusy = false;
        pumpTotals();
      }
    }, wait);
  }

  async function loadTotals() {
    const sc = state.scenario;
    const res = await api(`/v1/totals?by=region&scenario=${enc(sc)}`);
    if (!res.ok) throw new Error(await errorOf(res));
    const body = await res.json();
    if (sc !== state.scenario) return;
    renderTotals(body);
    document.body.dataset.totals = String(Date.now());
  }

  // addQuantities sums quantities by name. A sum that cancels out to rounding noise (a
  // retraction minus what it retracts) is snapped to zero.
  function addQuantities(into, qs) {
    for (const q of qs || []) {
      const cur = into.get(q.name) || { value: 0, unit: q.unit, scale: 0 };
      cur.value += q.value;
      cur.scale = Math.max(cur.scale, Math.abs(q.value), Math.abs(cur.value));
      if (Math.abs(cur.value) < cur.scale * 1e-9) cur.value = 0;
      into.set(q.name, cur);
    }
  }

  function valueOf(m, name) {
    const q = m && m.get(name);
    return q ? q.value : 0;
  }

  function unitOf(m, name) {
    const q = m && m.get(name);
    return q ? q.unit : UNITS[name] || '';
  }

  // aggregate sums by-region rows per layer (with per-key sums) and per region.
  function aggregate(rows) {
    const layers = {};
    for (const l of LAYERS) layers[l] = { qs: new Map(), keys: new Map(), events: 0 };
    const regions = new Map();
    for (const r of rows || []) {
      const a = layers[r.layer];
      if (!a) continue;
      a.events += r.events;
      addQuantities(a.qs, r.quantities);
      if (!a.keys.has(r.key)) a.keys.set(r.key, new Map());
      addQuantities(a.keys.get(r.key), r.quantities);
      const name = r.region || '(all)';
      if (!regions.has(name)) {
        const reg = {};
        for (const l of LAYERS) reg[l] = { qs: new Map(), keys: new Map() };
        regions.set(name, reg);
      }
      const ra = regions.get(name)[r.layer];
      addQuantities(ra.qs, r.quantities);
      if (!ra.keys.has(r.key)) ra.keys.set(r.key, new Map());
      addQuantities(ra.keys.get(r.key), r.quantities);
    }
    return { layers, regions };
  }

  let lastAgg = null;

  function renderTotals(body) {
    const agg = aggregate(body.rows);
    lastAgg = agg;
    $('#events-count').textContent = `${num(body.events)} stored events counted`;
    renderApplication();
    for (const [layer, spec] of Object.entries(BANDS)) {
      const a = agg.layers[layer];
      const band = $('#band-' + layer);
      setBand(layer,
        spec.main.map((n) => qty(valueOf(a.qs, n), unitOf(a.qs, n))),
        [...spec.sub.map((n) => `${num(valueOf(a.qs, n))} ${unitOf(a.qs, n)}`), eventsText(a.events)].join(' · '));
      renderDetail(band, a.keys, spec.key);
    }
    renderChips(agg.layers.chips);
    renderRegions(agg.regions);
  }

  function eventsText(n) {
    return n === 1 ? '1 event' : `${num(n)} events`;
  }

  // setBand replaces a band's total and flashes the band when the total changed.
  function setBand(layer, totals, sub) {
    const band = $('#band-' + layer);
    const total = $('.total', band);
    total.replaceChildren(...totals);
    $('.sub', band).textContent = sub || '';
    const text = total.textContent;
    const before = state.bandText[layer];
    state.bandText[layer] = text;
    if (before !== undefined && before !== text) {
      band.classList.remove('changed');
      void band.offsetWidth; // restart the animation
      band.classList.add('changed');
    }
  }

  function renderDetail(band, keys, name) {
    const all = [...keys.entries()].map(([k, m]) => [k, valueOf(m, name), unitOf(m, name)]);
    const floor = Math.max(1e-12, 1e-9 * Math.max(0, ...all.map(([, v]) => Math.abs(v))));
    const list = all
      .filter(([, v]) => Math.abs(v) >= floor)
      .sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]));
    const shown = list.slice(0, 4).map(([k, v, u]) =>
      el('li', { title: exact(v, u) }, el('span', { class: 'k' }, k), el('span', { class: 'v' }, num(v))));
    if (list.length > 4) shown.push(el('li', {}, el('span', { class: 'k' }, `+ ${list.length - 4} more`)));
    $('.detail', band).replaceChildren(...shown);
  }

  // The application band: the adoption signals' users if the server counts them, otherwise the
  // signals seen on the live feed since the page opened.
  function renderApplication() {
    const a = lastAgg && lastAgg.layers.application;
    if (a && a.events > 0) {
      setBand('application', [qty(valueOf(a.qs, 'users_delta'), unitOf(a.qs, 'users_delta'), true)], eventsText(a.events).replace('event', 'signal'));
      renderDetail($('#band-application'), a.keys, 'users_delta');
      return;
    }
    const n = state.signals.size;
    setBand('application', [qty(n, n === 1 ? 'signal' : 'signals')], 'seen live since this page opened');
  }

  // Chips are shown per accelerator kind and never summed across kinds.
  function renderChips(a) {
    const kinds = [...a.keys.entries()]
      .map(([k, m]) => [k, valueOf(m, 'units')])
      .filter(([, v]) => v !== 0)
      .sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]));
    const totals = kinds.length
      ? kinds.slice(0, 4).map(([k, v]) => qty(v, k === 'injected' ? 'injected' : k))
      : [qty(0, 'accelerators')];
    const sub = [];
    if (kinds.length) sub.push(kinds.length > 4 ? `accelerators, ${kinds.length} kinds` : 'accelerators');
    if (valueOf(a.qs, 'hbm_gb')) sub.push(`${num(valueOf(a.qs, 'hbm_gb'))} GB HBM`);
    sub.push(eventsText(a.events));
    setBand('chips', totals, sub.join(' · '));
    const band = $('#band-chips');
    band.setAttribute('aria-description', 'accelerator counts per kind; kinds are never summed');
    $('.detail', band).replaceChildren(...kinds.slice(4, 8).map(([k, v]) =>
      el('li', {}, el('span', { class: 'k' }, k), el('span', { class: 'v' }, num(v)))));
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

  function renderRegions(regions) {
    const list = [...regions.entries()].sort((x, y) =>
      valueOf(y[1].grid.qs, 'twh_per_year') - valueOf(x[1].grid.qs, 'twh_per_year') || x[0].localeCompare(y[0]));
    const cell = (label, v, unit) => el('td', { 'data-label': label, title: exact(v, unit) }, num(v));
    const rows = list.map(([code, r]) => {
      const chips = [...r.chips.keys.entries()]
        .map(([k, m]) => [k, valueOf(m, 'units')])
        .filter(([, v]) => v !== 0)
        .sort((x, y) => Math.abs(y[1]) - Math.abs(x[1]));
      return el('tr', { 'data-region': code },
        el('th', { scope: 'row', class: 'region-cell' }, el('span', { class: 'code' }, code), regionName(code)),
        cell('Model, tokens/day', valueOf(r.model.qs, 'tokens_per_day'), 'tokens/day'),
        cell('Infrastructure, FLOP/s', valueOf(r.infrastructure.qs, 'flop_per_s'), 'FLOP/s'),
        el('td', { class: 'chips', 'data-label': 'Chips, accelerators' },
          el('span', { class: 'kinds' }, chips.length ? chips.map(([k, v]) => el('span', { title: exact(v, k) }, `${num(v)} ${k}`)) : '0')),
        cell('Energy, MW IT', valueOf(r.energy.qs, 'it_mw'), 'MW IT'),
        cell('Energy, MW facility', valueOf(r.energy.qs, 'facility_mw'), 'MW facility'),
        cell('Grid, TWh/yr', valueOf(r.grid.qs, 'twh_per_year'), 'TWh/yr'),
        cell('Grid, tCO2/yr', valueOf(r.grid.qs, 'co2_t_per_year'), 'tCO2/yr'));
    });
    $('#regions tbody').replaceChildren(...rows);
    $('#regions-empty').hidden = rows.length > 0;
    $('#regions').hidden = rows.length === 0;
  }

  // ---- feed ----------------------------------------------------------------------------

  function startFeed() {
    if (state.feed) state.feed.abort();
    state.lastEventId = '';
    const ctl = new AbortController();
    state.feed = ctl;
    runFeed(state.scenario, ctl.signal);
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  // runFeed reads the scenario's feeds until aborted, reconnecting with Last-Event-ID.
  async function runFeed(scenario, signal) {
    let backoff = 500;
    while (!signal.aborted) {
      try {
        const headers = { Accept: 'text/event-stream' };
        if (state.lastEventId) headers['Last-Event-ID'] = state.lastEventId;
        const res = await api(`/v1/feeds?layers=${FEED_LAYERS.join(',')}&scenario=${enc(scenario)}`,
          { headers, signal, cache: 'no-store' });
        if (!res.ok) throw new Error(await errorOf(res));
        setStatus('live', 'live');
        backoff = 500;
        await readSSE(res.body, onFeedEvent);
        if (signal.aborted) return;
        setStatus('reconnecting', 'reconnecting…');
      } catch (e) {
        if (signal.aborted) return;
        setStatus(backoff >= 8000 ? 'offline' : 'reconnecting', backoff >= 8000 ? 'offline, retrying' : 'reconnecting…');
        console.warn('cascade feed:', e);
      }
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 10000);
      if (!signal.aborted) refreshTotals();
    }
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

  function layerOf(type) {
    const p = String(type || '').split('.');
    if (p[1] === 'demand') return p[2];
    if (p[2] === 'adoption') return 'application';
    if (p[2] === 'release') return 'model';
    return '';
  }

  function onFeedEvent(id, type, data) {
    if (id) state.lastEventId = id;
    let ev;
    try {
      ev = JSON.parse(data);
    } catch {
      return;
    }
    if (ev.correlationid) state.signals.add(ev.correlationid);
    addTicker(ev);
    renderApplication();
    refreshTotals();
    if (state.trace && state.trace.corr && ev.correlationid === state.trace.corr) refreshTraceSoon();
  }

  function clock(t) {
    const d = new Date(t);
    if (Number.isNaN(d.getTime())) return '';
    return d.toLocaleTimeString('en-GB', { hour12: false });
  }

  function addTicker(ev) {
    const layer = layerOf(ev.type);
    const pick = TICKER[ev.type];
    const { label, qs } = pick ? pick(ev.data || {}) : { label: '', qs: [] };
    const li = el('li', { class: 'new', 'data-layer': layer, 'data-id': ev.id },
      el('span', { class: 'what' },
        el('span', { class: 'layer' }, layer || ev.type), ' ',
        el('span', { class: 'region' }, ev.subject), ' ',
        el('span', { class: 'label' }, label || '')),
      el('time', { datetime: ev.time }, clock(ev.time)),
      el('span', { class: 'qty' }, qs.flatMap(([v, u], i) => [i ? ' · ' : '', el('span', { class: 'pair', title: exact(v, u) }, num(v, true), ' ', el('span', { class: 'u' }, u))])),
      el('button', { type: 'button', class: 'id-link', title: 'trace ' + ev.id, 'aria-label': 'trace event ' + ev.id, onclick: () => traceFromUI(ev.id) }, ev.id));
    const ticker = $('#ticker');
    ticker.prepend(li);
    while (ticker.children.length > TICKER_MAX) ticker.lastElementChild.remove();
    $('#ticker-empty').hidden = true;
    setTimeout(() => li.classList.remove('new'), 700);
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
    $('#scenario').addEventListener('change', (e) => setScenario(e.target.value));
    renderApplication();
    const sc = await loadScenarios();
    setScenario(sc);
  }

  main();
})();
