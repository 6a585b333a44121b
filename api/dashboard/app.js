/* app.js - the bufcache dashboard: plain canvas charts fed by Server-Sent
 * Events from /debug/dashboard/events. No library and no build step: this
 * file is inlined into the page when bufcache is built
 * (api/dashboard/embed.cmake). docs/ARCHITECTURE.md ("Dashboard") says why
 * plain canvas.
 *
 * Token: a ?token= in the page's URL moves to sessionStorage at once and
 * leaves the address bar (history.replaceState). fetch() sends it as
 * "Authorization: Bearer"; the EventSource, which cannot send headers, puts
 * it in the events URL's query. A tab keeps it until it closes ("Forget
 * token" drops it sooner). Before opening the stream the page asks
 * /debug/dashboard/info with the token: a 401 there shows the token form
 * with the reason.
 *
 * State, for people and tests: window.bufcacheDashboard (status, samples,
 * charts[id].points, lastAction).
 */
(function () {
  'use strict';

  var HISTORY_MS = 5 * 60 * 1000; /* what the server keeps and the page holds */
  var view = { ms: HISTORY_MS, tick: 60000 }; /* the window drawn: 5 or 1 min */
  var TOKEN_KEY = 'bufcache.adminToken';
  var $ = function (id) { return document.getElementById(id); };

  var state = {
    status: 'starting', message: '', info: null, boot: null,
    samples: [], lastSeq: 0, received: 0,
    frozen: false, frozenAt: 0, windowMs: 5 * 60 * 1000,
    charts: {}, lastAction: null, actions: 0
  };
  window.bufcacheDashboard = state;

  /* ---- the token --------------------------------------------------------- */

  var memoryToken = ''; /* when sessionStorage is unavailable */
  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return memoryToken; }
  }
  function setToken(t) {
    memoryToken = t;
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* memoryToken it is */ }
  }
  function takeTokenFromURL() {
    var u = new URL(location.href);
    if (!u.searchParams.has('token')) return;
    var t = u.searchParams.get('token');
    if (t) setToken(t);
    u.searchParams.delete('token');
    history.replaceState(null, '', u.pathname + u.search + u.hash);
  }
  function authHeaders() {
    var t = getToken();
    return t ? { Authorization: 'Bearer ' + t } : {};
  }

  /* ---- numbers ----------------------------------------------------------- */

  var UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  function fmtBytes(v) {
    if (v == null || !isFinite(v)) return '–';
    var x = Math.abs(v), i = 0;
    while (x >= 1024 && i < UNITS.length - 1) { x /= 1024; i++; }
    var d = i === 0 || x >= 100 ? 0 : x >= 10 ? 1 : 2;
    return (v < 0 ? '-' : '') + x.toFixed(d) + ' ' + UNITS[i];
  }
  function fmtNum(v) {
    if (v == null || !isFinite(v)) return '–';
    var a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(a >= 1e10 ? 0 : 1) + 'G';
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
    if (a >= 1e4) return (v / 1e3).toFixed(a >= 1e5 ? 0 : 1) + 'k';
    if (a >= 100 || Math.round(v) === v) return String(Math.round(v));
    return v.toFixed(a >= 10 ? 1 : 2);
  }
  function fmtRate(v) { return v == null ? '–' : fmtNum(v) + '/s'; }
  function fmtUs(us) {
    if (us == null || !isFinite(us)) return '–';
    if (us >= 1e6) return (us / 1e6).toFixed(us >= 1e7 ? 0 : 2) + ' s';
    if (us >= 1e3) return (us / 1e3).toFixed(us >= 1e4 ? 0 : us >= 1e5 ? 0 : 1) + ' ms';
    if (us >= 1) return us.toFixed(us >= 100 ? 0 : us >= 10 ? 1 : 2) + ' µs';
    return Math.round(us * 1000) + ' ns';
  }
  /* for axis labels: "1.00 µs" -> "1 µs", "2.50 KiB" -> "2.5 KiB" */
  function trim(fmt) {
    return function (v) { return fmt(v).replace(/(\.\d*?)0+(?=\D|$)/, '$1').replace(/\.(?=\D|$)/, ''); };
  }
  function fmtPct(v) {
    if (v == null || !isFinite(v)) return '–';
    var p = v * 100;
    return p.toFixed(p === 0 || p >= 10 ? 1 : p >= 1 ? 2 : 3) + '%';
  }
  function get(o, path) {
    for (var i = 0; i < path.length && o != null; i++) o = o[path[i]];
    return o == null || (typeof o === 'number' && !isFinite(o)) ? null : o;
  }
  function pick() { var path = Array.prototype.slice.call(arguments); return function (s) { return get(s, path); }; }

  /* axis steps: 1-2-5 of a power of ten (of a power of 1024 for bytes) */
  function niceStep(span, n) {
    var raw = span / Math.max(1, n);
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  }
  function byteStep(span, n) {
    var unit = 1;
    while (span / unit >= 2048 && unit < Math.pow(1024, 4)) unit *= 1024;
    return niceStep(span / unit, n) * unit;
  }

  /* ---- colours (CSS variables, so the dark scheme follows) --------------- */

  var C = {};
  function loadColors() {
    var cs = getComputedStyle(document.documentElement);
    ['bg', 'card', 'ink', 'muted', 'line', 'grid', 'axis', 'accent', 'ok', 'warn', 'bad',
      's1', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 'heat0'].forEach(function (k) {
      C[k] = cs.getPropertyValue('--' + k).trim();
    });
  }
  /* viridis, five stops */
  var HEAT = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function heatColor(f) {
    f = Math.max(0, Math.min(1, f)) * (HEAT.length - 1);
    var i = Math.min(HEAT.length - 2, Math.floor(f)), u = f - i, a = HEAT[i], b = HEAT[i + 1];
    return 'rgb(' + Math.round(a[0] + (b[0] - a[0]) * u) + ',' + Math.round(a[1] + (b[1] - a[1]) * u) +
      ',' + Math.round(a[2] + (b[2] - a[2]) * u) + ')';
  }
  function alpha(color, a) {
    var m = /^#([0-9a-f]{6})$/i.exec(color);
    if (!m) return color;
    var n = parseInt(m[1], 16);
    return 'rgba(' + (n >> 16) + ',' + ((n >> 8) & 255) + ',' + (n & 255) + ',' + a + ')';
  }

  /* ---- chart cards ------------------------------------------------------- */

  var M = { L: 62, R: 12, T: 8, B: 22 }; /* plot margins, CSS px */
  var cards = [];

  function Card(id, title, sub, opts) {
    this.id = id;
    this.opts = opts || {};
    var el = this.el = document.createElement('article');
    el.className = 'card' + (this.opts.wide ? ' wide' : '') + (this.opts.tall ? ' tall' : '') +
      (this.opts.short ? ' short' : '');
    el.id = 'chart-' + id;
    el.dataset.points = '0';
    var h = document.createElement('h2');
    h.textContent = title;
    if (sub) {
      var s = document.createElement('span');
      s.className = 'sub';
      s.textContent = sub;
      h.appendChild(s);
    }
    el.appendChild(h);
    this.legend = document.createElement('div');
    this.legend.className = 'legend';
    el.appendChild(this.legend);
    var plot = document.createElement('div');
    plot.className = 'plot';
    this.canvas = document.createElement('canvas');
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', title + ' chart; the values are in the legend above it');
    this.empty = document.createElement('div');
    this.empty.className = 'empty';
    this.empty.textContent = 'waiting for samples…';
    plot.appendChild(this.canvas);
    plot.appendChild(this.empty);
    el.appendChild(plot);
    this.hover = null;
    var self = this;
    this.canvas.addEventListener('mousemove', function (e) {
      var r = self.canvas.getBoundingClientRect();
      self.hover = { x: e.clientX - r.left, y: e.clientY - r.top };
      self.redrawSelf();
    });
    this.canvas.addEventListener('mouseleave', function () { self.hover = null; self.redrawSelf(); });
    state.charts[id] = { points: 0 };
    cards.push(this);
  }
  /* hovering redraws this card only, with what drawAll drew last */
  Card.prototype.redrawSelf = function () {
    var self = this;
    if (this.hoverPending || !lastDrawn) return;
    this.hoverPending = true;
    requestAnimationFrame(function () {
      self.hoverPending = false;
      self.draw(lastDrawn.vis, lastDrawn.t1);
    });
  };
  Card.prototype.begin = function () {
    var dpr = window.devicePixelRatio || 1;
    var w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    var W = Math.max(1, Math.round(w * dpr)), H = Math.max(1, Math.round(h * dpr));
    if (this.canvas.width !== W || this.canvas.height !== H) {
      this.canvas.width = W;
      this.canvas.height = H;
    }
    var ctx = this.canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = '11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif';
    this.w = w;
    this.h = h;
    this.pw = Math.max(10, w - M.L - M.R);
    this.ph = Math.max(10, h - M.T - M.B);
    return ctx;
  };
  Card.prototype.setPoints = function (n, emptyText) {
    this.el.dataset.points = String(n);
    state.charts[this.id].points = n;
    this.empty.style.display = n ? 'none' : '';
    if (!n) this.empty.textContent = emptyText || 'waiting for samples…';
  };
  /* items: [{label, color, dash, value}] */
  Card.prototype.setLegend = function (items, note) {
    var html = '';
    items.forEach(function (it) {
      html += '<span class="item"><span class="sw' + (it.dash ? ' dash' : '') + '" style="background:' +
        it.color + ';color:' + it.color + '"></span>' + esc(it.label) +
        ' <span class="val">' + esc(it.value) + '</span></span>';
    });
    if (note) html += '<span class="item">' + esc(note) + '</span>';
    if (html !== this.legendHTML) {
      this.legend.innerHTML = html;
      this.legendHTML = html;
    }
  };
  Card.prototype.xOf = function (t, t1) { return M.L + (t - (t1 - view.ms)) / view.ms * this.pw; };
  Card.prototype.tOf = function (x, t1) { return t1 - view.ms + (x - M.L) / this.pw * view.ms; };
  /* vertical lines (minutes, or 10 s in the 1-minute view), labelled
   * relative to the newest sample */
  Card.prototype.timeAxis = function (ctx, t1) {
    ctx.strokeStyle = C.grid;
    ctx.fillStyle = C.axis;
    ctx.lineWidth = 1;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    var every = this.pw * view.tick / view.ms < 44 ? 2 : 1; /* labels that fit */
    for (var k = 0; k * view.tick <= view.ms; k++) {
      var x = Math.round(this.xOf(t1 - k * view.tick, t1)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, M.T);
      ctx.lineTo(x, M.T + this.ph);
      ctx.stroke();
      var label = k === 0 ? 'now' : view.tick >= 60000 ? '−' + k * view.tick / 60000 + ' min' : '−' + k * view.tick / 1000 + ' s';
      if (k % every === 0) ctx.fillText(label, Math.min(Math.max(x, M.L + 14), this.w - 18), M.T + this.ph + 5);
    }
  };
  /* horizontal lines and labels; returns y(v) */
  Card.prototype.valueAxis = function (ctx, lo, hi, fmt, log) {
    var ph = this.ph, self = this, ticks = [];
    var y = log
      ? function (v) { return M.T + ph - (Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * ph; }
      : function (v) { return M.T + ph - (v - lo) / (hi - lo) * ph; };
    if (log) {
      for (var e = Math.round(Math.log10(lo)); e <= Math.round(Math.log10(hi)); e++) {
        var p = Math.pow(10, e);
        ticks.push(p);
        if (Math.log10(hi / lo) <= 2.01) { ticks.push(2 * p); ticks.push(5 * p); }
      }
    } else {
      var step = this.step;
      for (var v = lo; v <= hi + step / 1000; v += step) ticks.push(v);
    }
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    ticks.forEach(function (v) {
      if (v < lo * 0.999 || v > hi * 1.001) return;
      var yy = Math.round(y(v)) + 0.5;
      ctx.strokeStyle = C.grid;
      ctx.beginPath();
      ctx.moveTo(M.L, yy);
      ctx.lineTo(M.L + self.pw, yy);
      ctx.stroke();
      ctx.fillStyle = C.axis;
      ctx.fillText(fmt(v), M.L - 6, yy);
    });
    ctx.strokeStyle = C.line;
    ctx.beginPath();
    ctx.moveTo(M.L + 0.5, M.T);
    ctx.lineTo(M.L + 0.5, M.T + ph + 0.5);
    ctx.lineTo(M.L + this.pw, M.T + ph + 0.5);
    ctx.stroke();
    return y;
  };
  /* the sample nearest the pointer, if it is over the plot */
  Card.prototype.hovered = function (vis, t1) {
    if (!this.hover || !vis.length || this.hover.x < M.L || this.hover.x > M.L + this.pw) return null;
    var t = this.tOf(this.hover.x, t1), best = null, bd = Infinity;
    vis.forEach(function (s) { var d = Math.abs(s.t - t); if (d < bd) { bd = d; best = s; } });
    return bd <= 3000 ? best : null;
  };
  Card.prototype.cursor = function (ctx, x) {
    ctx.strokeStyle = C.axis;
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(Math.round(x) + 0.5, M.T);
    ctx.lineTo(Math.round(x) + 0.5, M.T + this.ph);
    ctx.stroke();
    ctx.setLineDash([]);
  };
  function ago(t, t1) { var s = Math.round((t1 - t) / 1000); return s <= 0 ? 'now' : '−' + s + ' s'; }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]; });
  }
  function gapMs() { return 2.5 * ((state.info && state.info.interval_ms) || 1000); }

  /* ---- line charts ---------------------------------------------------------
   * opts.series: [{label, color, get(sample), dash, fill, soft}]; a soft
   * series (a limit far above the data) only widens the scale when it is
   * within 3x of the rest. opts.fmt formats values, opts.bytes picks
   * 1024-based steps, opts.log a log scale, opts.max a fixed top. */
  function LineChart(id, title, sub, opts) { Card.call(this, id, title, sub, opts); }
  LineChart.prototype = Object.create(Card.prototype);
  LineChart.prototype.draw = function (vis, t1) {
    var o = this.opts, ctx = this.begin(), self = this;
    var vals = o.series.map(function (se) { return vis.map(function (s) { var v = se.get(s); return v == null || !isFinite(v) ? null : v; }); });
    var hi = 0, lo = Infinity, n = 0;
    o.series.forEach(function (se, i) {
      if (se.soft) return;
      vals[i].forEach(function (v) { if (v != null) { hi = Math.max(hi, v); if (v > 0) lo = Math.min(lo, v); n++; } });
    });
    var offScale = {};
    o.series.forEach(function (se, i) {
      if (!se.soft) return;
      var m = 0;
      vals[i].forEach(function (v) { if (v != null) m = Math.max(m, v); });
      if (m > 0 && (hi === 0 || m <= hi * 3)) hi = Math.max(hi, m); else if (m > 0) offScale[i] = true;
    });
    var count = vals[0].filter(function (v) { return v != null; }).length;
    this.setPoints(count, o.emptyText);
    var y;
    if (o.log) {
      if (lo === Infinity) { lo = 1; hi = 10; }
      lo = Math.pow(10, Math.floor(Math.log10(lo)));
      hi = Math.pow(10, Math.ceil(Math.log10(Math.max(hi, lo * 10))));
      y = this.valueAxis(ctx, lo, hi, trim(o.fmt), true);
    } else {
      if (o.max != null) hi = Math.max(hi, o.max);
      if (hi <= 0) hi = o.bytes ? 1024 : 1;
      this.step = (o.bytes ? byteStep : niceStep)(hi, o.short ? 1 : 4);
      if (o.integer) this.step = Math.max(1, Math.round(this.step));
      hi = Math.ceil(hi / this.step - 1e-9) * this.step;
      y = this.valueAxis(ctx, 0, hi, trim(o.fmt), false);
    }
    this.timeAxis(ctx, t1);
    ctx.save();
    ctx.beginPath();
    ctx.rect(M.L, M.T - 2, this.pw + 2, this.ph + 4);
    ctx.clip();
    var gap = gapMs();
    o.series.forEach(function (se, i) {
      if (offScale[i]) return;
      var color = C[se.color] || se.color, runs = [], run = null, prevT = null;
      vis.forEach(function (s, k) {
        var v = vals[i][k];
        if (v == null || (prevT != null && s.t - prevT > gap)) { if (run && run.length) runs.push(run); run = null; }
        if (v != null) { (run = run || []).push([self.xOf(s.t, t1), y(v)]); }
        prevT = s.t;
      });
      if (run && run.length) runs.push(run);
      runs.forEach(function (r) {
        if (se.fill) {
          ctx.fillStyle = alpha(color, 0.14);
          ctx.beginPath();
          ctx.moveTo(r[0][0], M.T + self.ph);
          r.forEach(function (p) { ctx.lineTo(p[0], p[1]); });
          ctx.lineTo(r[r.length - 1][0], M.T + self.ph);
          ctx.closePath();
          ctx.fill();
        }
        ctx.strokeStyle = color;
        ctx.lineWidth = se.width || 1.6;
        ctx.lineJoin = 'round';
        ctx.setLineDash(se.dash ? [5, 4] : []);
        ctx.beginPath();
        r.forEach(function (p, k) { if (k) ctx.lineTo(p[0], p[1]); else ctx.moveTo(p[0], p[1]); });
        if (r.length === 1) ctx.lineTo(r[0][0] + 1, r[0][1]);
        ctx.stroke();
        ctx.setLineDash([]);
      });
    });
    ctx.restore();
    var at = this.hovered(vis, t1) || vis[vis.length - 1];
    if (at && at !== vis[vis.length - 1]) {
      var x = this.xOf(at.t, t1);
      this.cursor(ctx, x);
      o.series.forEach(function (se, i) {
        var v = se.get(at);
        if (v == null || offScale[i]) return;
        ctx.fillStyle = C[se.color] || se.color;
        ctx.beginPath();
        ctx.arc(x, y(v), 3, 0, 2 * Math.PI);
        ctx.fill();
      });
    }
    this.setLegend(o.series.map(function (se, i) {
      return { label: se.label, color: C[se.color] || se.color, dash: se.dash,
        value: (at ? o.fmt(se.get(at)) : '–') + (offScale[i] ? ' (off scale)' : '') };
    }), at && at !== vis[vis.length - 1] ? ago(at.t, t1) : o.note && at ? o.note(at) : null);
  };

  /* ---- GC pauses per cycle: a point at each cycle's end ------------------- */
  function PauseChart(id, title, sub, opts) { Card.call(this, id, title, sub, opts); }
  PauseChart.prototype = Object.create(Card.prototype);
  PauseChart.prototype.draw = function (vis, t1) {
    var ctx = this.begin(), self = this, pts = [], t0 = t1 - view.ms;
    vis.forEach(function (s) {
      (get(s, ['gc', 'pauses']) || []).forEach(function (p) { if (p[0] >= t0 - 1000) pts.push({ t: Math.min(p[0], t1), us: p[1] / 1e3 }); });
    });
    this.setPoints(pts.length, 'no GC cycle in the window');
    var hi = 0, sum = 0;
    pts.forEach(function (p) { hi = Math.max(hi, p.us); sum += p.us; });
    this.step = niceStep(hi > 0 ? hi : 100, 4);
    hi = Math.max(this.step, Math.ceil(hi / this.step - 1e-9) * this.step);
    var y = this.valueAxis(ctx, 0, hi, trim(fmtUs), false);
    this.timeAxis(ctx, t1);
    var color = C.s6, near = null, nd = Infinity;
    pts.forEach(function (p) {
      var x = self.xOf(p.t, t1), yy = y(p.us);
      ctx.strokeStyle = alpha(color, 0.35);
      ctx.beginPath();
      ctx.moveTo(x, M.T + self.ph);
      ctx.lineTo(x, yy);
      ctx.stroke();
      ctx.fillStyle = color;
      ctx.beginPath();
      ctx.arc(x, yy, 3.2, 0, 2 * Math.PI);
      ctx.fill();
      if (self.hover) {
        var d = Math.abs(self.hover.x - x);
        if (d < nd && d < 12) { nd = d; near = p; }
      }
    });
    var last = pts.length ? pts[pts.length - 1] : null, s = vis[vis.length - 1];
    var items = [
      { label: near ? 'pause ' + ago(near.t, t1) : 'last', color: color, value: fmtUs((near || last || {}).us) },
      { label: 'max', color: C.s5, value: pts.length ? fmtUs(hi === 0 ? 0 : Math.max.apply(null, pts.map(function (p) { return p.us; }))) : '–' },
      { label: 'mean', color: C.s3, value: pts.length ? fmtUs(sum / pts.length) : '–' },
      { label: 'cycles', color: C.s1, value: pts.length + ' (NumGC ' + (get(s, ['gc', 'num']) || 0) + ')' }
    ];
    this.setLegend(items);
  };

  /* ---- the pause histogram: every stop-the-world pause ------------------ */
  function HistChart(id, title, sub, opts) { Card.call(this, id, title, sub, opts); }
  HistChart.prototype = Object.create(Card.prototype);
  HistChart.prototype.draw = function (vis) {
    var ctx = this.begin(), self = this, info = state.info;
    var last = vis[vis.length - 1], first = vis[0];
    var all = get(last, ['gc', 'hist']) || [], base = get(first, ['gc', 'hist']) || [];
    var bounds = (info && info.pause_bounds_ns) || [];
    var win = all.map(function (v, i) { return v - (vis.length > 1 ? base[i] || 0 : 0); });
    var total = all.reduce(function (a, b) { return a + b; }, 0);
    var wtotal = win.reduce(function (a, b) { return a + b; }, 0);
    this.setPoints(total, 'no pause yet');
    var hi = Math.max(1, Math.max.apply(null, all.length ? all : [0]));
    this.step = niceStep(hi, 4);
    hi = Math.ceil(hi / this.step - 1e-9) * this.step;
    var y = this.valueAxis(ctx, 0, hi, fmtNum, false);
    var nb = all.length || 1, bw = this.pw / nb;
    var us = trim(fmtUs);
    var labels = bounds.map(function (ns) { return '≤' + us(ns / 1e3).replace(' ', ''); });
    labels.push('>' + us((bounds[bounds.length - 1] || 0) / 1e3).replace(' ', ''));
    var every = Math.max(1, Math.ceil(46 / bw)), hov = -1;
    if (this.hover && this.hover.x >= M.L) hov = Math.floor((this.hover.x - M.L) / bw);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (var i = 0; i < nb; i++) {
      var x = M.L + i * bw + 2, w = Math.max(1, bw - 4);
      if (all[i]) {
        ctx.fillStyle = alpha(C.s1, i === hov ? 0.45 : 0.25);
        ctx.fillRect(x, y(all[i]), w, M.T + self.ph - y(all[i]));
      }
      if (win[i] > 0) {
        ctx.fillStyle = C.s1;
        ctx.fillRect(x, y(win[i]), w, M.T + self.ph - y(win[i]));
      }
      if (i % every === 0) {
        ctx.fillStyle = C.axis;
        ctx.fillText(labels[i] || '', x + w / 2, M.T + self.ph + 5);
      }
    }
    var items = [
      { label: view.ms > 60000 ? 'last 5 min' : 'last minute', color: C.s1, value: fmtNum(wtotal) },
      { label: 'since start', color: alpha(C.s1, 0.3), value: fmtNum(total) }
    ];
    this.setLegend(items, hov >= 0 && hov < nb ? labels[hov] + ': ' + fmtNum(win[hov]) + ' / ' + fmtNum(all[hov]) : null);
  };

  /* ---- allocations by size class: a heat map (statsviz's) ---------------- */
  function HeatMap(id, title, sub, opts) { Card.call(this, id, title, sub, opts); }
  HeatMap.prototype = Object.create(Card.prototype);
  HeatMap.prototype.draw = function (vis, t1) {
    var ctx = this.begin(), self = this, info = state.info;
    var classes = (info && info.classes) || [];
    /* the classes that allocated in the window, large objects on top */
    var active = [], max = 0;
    for (var c = 0; c < classes.length; c++) {
      var any = false;
      for (var k = 0; k < vis.length; k++) {
        var v = (get(vis[k], ['alloc', 'classes']) || [])[c] || 0;
        if (v > 0) { any = true; if (v > max) max = v; }
      }
      if (any) active.push(c);
    }
    active.sort(function (a, b) { return (a === 0 ? Infinity : classes[a]) - (b === 0 ? Infinity : classes[b]); });
    this.setPoints(active.length ? vis.length : 0, vis.length ? 'no allocations in the window' : null);
    var rows = active.length, rh = this.ph / Math.max(1, rows);
    var size = trim(fmtBytes);
    var name = function (c) { return c === 0 ? 'large' : size(classes[c]); };
    ctx.fillStyle = C.heat0;
    ctx.fillRect(M.L, M.T, this.pw, this.ph);
    var lmax = Math.log1p(max), hovCell = null;
    var ht = this.hover ? this.tOf(this.hover.x, t1) : null;
    var hr = this.hover ? rows - 1 - Math.floor((this.hover.y - M.T) / rh) : -1;
    vis.forEach(function (s) {
      var dt = (s.dt || 1) * 1000;
      var x0 = self.xOf(s.t - dt, t1), x1 = self.xOf(s.t, t1);
      if (x1 < M.L) return;
      x0 = Math.max(x0, M.L);
      var cl = get(s, ['alloc', 'classes']) || [];
      active.forEach(function (c, r) {
        var v = cl[c] || 0;
        if (v <= 0) return;
        ctx.fillStyle = heatColor(Math.log1p(v) / lmax);
        ctx.fillRect(x0, M.T + (rows - 1 - r) * rh, x1 - x0 + 0.6, rh > 8 ? rh - 1 : rh + 0.6);
      });
      if (ht != null && ht >= s.t - dt && ht < s.t && hr >= 0 && hr < rows)
        hovCell = { s: s, c: active[hr], v: cl[active[hr]] || 0 };
    });
    /* row labels, as many as fit */
    ctx.fillStyle = C.axis;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    var every = Math.max(1, Math.ceil(12 / rh));
    active.forEach(function (c, r) {
      if (r % every === 0 || r === rows - 1) ctx.fillText(name(c), M.L - 6, M.T + (rows - 1 - r + 0.5) * rh);
    });
    this.timeAxis(ctx, t1);
    var s = vis[vis.length - 1];
    this.setLegend([
      { label: 'objects', color: heatColor(1), value: fmtRate(get(s, ['alloc', 'objects'])) },
      { label: 'bytes', color: heatColor(0.5), value: fmtBytes(get(s, ['alloc', 'bytes'])) + '/s' },
      { label: 'busiest class', color: heatColor(0), value: fmtRate(max) }
    ], hovCell ? name(hovCell.c) + ' ' + ago(hovCell.s.t, t1) + ': ' + fmtRate(hovCell.v) : 'colour: log of allocations/s');
  };

  /* ---- the layout -------------------------------------------------------- */

  var grid = $('grid');
  function group(title) {
    var h = document.createElement('div');
    h.className = 'group';
    h.textContent = title;
    grid.appendChild(h);
  }
  function add(card) { grid.appendChild(card.el); return card; }
  /* two short cards in one grid cell */
  function stack(a, b) {
    var d = document.createElement('div');
    d.className = 'stack';
    d.appendChild(a.el);
    d.appendChild(b.el);
    grid.appendChild(d);
  }

  group('Memory');
  add(new LineChart('heap', 'Heap', 'in use, idle and released vs the GC goal and the soft limit', {
    wide: true, tall: true, bytes: true, fmt: fmtBytes, series: [
      { label: 'in use (HeapInuse)', color: 's1', get: pick('heap', 'inuse'), fill: true, width: 2 },
      { label: 'idle (HeapIdle)', color: 's2', get: pick('heap', 'idle') },
      { label: 'released (HeapReleased)', color: 's3', get: pick('heap', 'released') },
      { label: 'GC goal (NextGC)', color: 's4', get: pick('heap', 'goal'), dash: true },
      { label: 'soft limit', color: 's5', get: pick('heap', 'limit'), dash: true, soft: true }
    ] }));
  add(new LineChart('objects', 'Live objects', 'HeapObjects', {
    fmt: fmtNum, series: [{ label: 'objects', color: 's7', get: pick('heap', 'objects'), fill: true }] }));

  group('Garbage collector');
  add(new PauseChart('pauses', 'Stop-the-world pause per cycle', 'PauseNs: both pauses of a cycle'));
  add(new HistChart('pausehist', 'Pause histogram', 'every stop-the-world pause (go_gc_pauses_seconds)'));
  add(new LineChart('gccpu', 'GC CPU fraction', 'GCCPUFraction: the GC’s share of the CPU since start', {
    fmt: fmtPct, series: [
      { label: 'GC', color: 's6', get: pick('gc', 'cpu_fraction'), fill: true }],
    note: function (s) { return 'the whole process: ' + fmtPct(get(s, ['gc', 'process_cpu'])) + ' of a core'; } }));

  group('Allocation');
  add(new HeatMap('alloc', 'Allocations by size class', 'objects allocated per second; a row per class that allocated', { wide: true }));
  add(new LineChart('heapalloc', 'Allocated heap', 'live and garbage between cycles', {
    bytes: true, fmt: fmtBytes, series: [
      { label: 'allocated (HeapAlloc)', color: 's1', get: pick('heap', 'alloc'), fill: true },
      { label: 'live at the last GC', color: 's4', get: pick('heap', 'live') },
      { label: 'GC goal', color: 's4', get: pick('heap', 'goal'), dash: true }],
    note: function (s) { return 'allocating ' + fmtBytes(get(s, ['alloc', 'bytes'])) + '/s'; } }));

  group('Cache');
  add(new LineChart('entries', 'Entries', 'live entries in the index', {
    fmt: fmtNum, series: [{ label: 'entries', color: 's1', get: pick('cache', 'entries'), fill: true }],
    note: function (s) {
      return 'values ' + fmtBytes(get(s, ['cache', 'bytes'])) + ', on the heap ' + fmtBytes(get(s, ['cache', 'mem']));
    } }));
  add(new LineChart('hitratio', 'Hit ratio', 'hits / lookups, each second', {
    fmt: fmtPct, max: 1, emptyText: 'no lookups in the window', series: [
      { label: 'hit ratio', color: 's4', get: pick('cache', 'hit_ratio'), fill: true }] }));
  add(new LineChart('evictions', 'Evictions and writes', 'per second, by reason', {
    fmt: fmtNum, series: [
      { label: 'evicted: memory', color: 's5', get: pick('cache', 'evictions', 'memory') },
      { label: 'expired: TTL', color: 's2', get: pick('cache', 'evictions', 'ttl') },
      { label: 'deleted', color: 's3', get: pick('cache', 'deletes') },
      { label: 'stored', color: 's1', get: pick('cache', 'inserts'), dash: true }
    ] }));

  group('Requests (data listener)');
  add(new LineChart('rps', 'Requests per second', 'finished, by method', {
    fmt: fmtNum, series: [
      { label: 'all', color: 's1', get: pick('req', 'rps'), fill: true, width: 2 },
      { label: 'GET/HEAD', color: 's4', get: pick('req', 'methods', 'GET') },
      { label: 'PUT', color: 's2', get: pick('req', 'methods', 'PUT') },
      { label: 'DELETE', color: 's8', get: pick('req', 'methods', 'DELETE') },
      { label: '4xx', color: 's3', get: pick('req', 'err4xx'), dash: true },
      { label: '5xx', color: 's5', get: pick('req', 'err5xx'), dash: true }
    ] }));
  add(new LineChart('latency', 'Latency', 'quantiles of each second’s requests (log scale)', {
    fmt: fmtUs, log: true, emptyText: 'no requests in the window', series: [
      { label: 'p50', color: 's4', get: pick('req', 'p50_us') },
      { label: 'p90', color: 's2', get: pick('req', 'p90_us') },
      { label: 'p99', color: 's5', get: pick('req', 'p99_us'), width: 2 },
      { label: 'mean', color: 's3', get: pick('req', 'mean_us'), dash: true }
    ] }));
  stack(
    new LineChart('inflight', 'In flight', 'requests begun and not finished', {
      short: true, integer: true, fmt: fmtNum, series: [{ label: 'in flight', color: 's7', get: pick('req', 'inflight'), fill: true }] }),
    new LineChart('cancels', 'Cancellations', 'per second, by cause', {
      short: true, fmt: fmtNum, series: [
        { label: 'client gone', color: 's2', get: pick('req', 'canceled', 'client_gone') },
        { label: 'deadline', color: 's5', get: pick('req', 'canceled', 'deadline') },
        { label: 'shutdown', color: 's3', get: pick('req', 'canceled', 'shutdown') }
      ] }));

  /* the numbers strip */
  var STATS = [
    ['heap in use', function (s) { return fmtBytes(get(s, ['heap', 'inuse'])); }],
    ['GC goal', function (s) { return fmtBytes(get(s, ['heap', 'goal'])); }],
    ['live objects', function (s) { return fmtNum(get(s, ['heap', 'objects'])); }],
    ['GC cycles', function (s) { return fmtNum(get(s, ['gc', 'num'])); }, 'numgc'],
    ['last pause', function () { return fmtUs(lastPauseUs()); }],
    ['entries', function (s) { return fmtNum(get(s, ['cache', 'entries'])); }],
    ['hit ratio', function (s) { return fmtPct(get(s, ['cache', 'hit_ratio'])); }],
    ['requests/s', function (s) { return fmtNum(get(s, ['req', 'rps'])); }],
    ['p99 latency', function (s) { return fmtUs(get(s, ['req', 'p99_us'])); }],
    ['in flight', function (s) { return fmtNum(get(s, ['req', 'inflight'])); }]
  ];
  var statEls = STATS.map(function (st) {
    var d = document.createElement('div');
    d.className = 'stat';
    if (st[2]) d.id = 'stat-' + st[2];
    d.innerHTML = '<span class="v">–</span><span class="k"></span>';
    d.querySelector('.k').textContent = st[0];
    $('stats').appendChild(d);
    return d.querySelector('.v');
  });
  function lastPauseUs() {
    for (var i = state.samples.length - 1; i >= 0; i--) {
      var p = get(state.samples[i], ['gc', 'pauses']);
      if (p && p.length) return p[p.length - 1][1] / 1e3;
    }
    return null;
  }

  /* ---- drawing ------------------------------------------------------------ */

  var pending = false, lastDrawn = null;
  function redraw() {
    if (pending) return;
    pending = true;
    var done = false;
    var run = function () { if (done) return; done = true; pending = false; drawAll(); };
    requestAnimationFrame(run);
    setTimeout(run, 250); /* rAF does not run in a hidden tab */
  }
  function drawAll() {
    var n = state.samples.length;
    if (!n) return;
    var t1 = state.frozen ? state.frozenAt : state.samples[n - 1].t;
    var vis = state.samples.filter(function (s) { return s.t > t1 - view.ms - 2000 && s.t <= t1; });
    if (!vis.length) return;
    lastDrawn = { vis: vis, t1: t1 };
    cards.forEach(function (c) { c.draw(vis, t1); });
    var last = vis[vis.length - 1];
    STATS.forEach(function (st, i) { statEls[i].textContent = st[1](last); });
    updateMeta();
  }

  /* ---- status ------------------------------------------------------------- */

  function setStatus(status, message) {
    state.status = status;
    state.message = message || '';
    var el = $('conn');
    el.dataset.status = state.frozen && status === 'live' ? 'frozen' : status;
    var text = {
      starting: 'starting', connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…',
      unauthorized: 'token needed', error: 'error', stopped: 'server stopped'
    }[status] || status;
    if (state.frozen && status === 'live') text = 'frozen';
    $('conn-text').textContent = text;
    var b = $('banner');
    if ((status === 'error' || status === 'stopped' || status === 'reconnecting') && message) {
      b.textContent = message;
      b.hidden = false;
    } else {
      b.hidden = true;
    }
  }
  function updateMeta() {
    var i = state.info, s = state.samples[state.samples.length - 1];
    if (!i) return;
    var parts = [];
    parts.push('soft limit ' + fmtBytes(get(s, ['heap', 'limit']) || i.memory_limit));
    var gogc = get(s, ['gc', 'percent']);
    if (gogc == null) gogc = i.gc_percent;
    parts.push('GOGC ' + (gogc < 0 ? 'off' : gogc));
    parts.push(i.workers + ' workers');
    parts.push(state.samples.length + ' samples');
    if (s && s.admin) parts.push(s.admin.streams + '/' + i.max_streams + ' dashboards');
    if (s && s.draining) parts.push('DRAINING');
    $('meta').textContent = parts.join(' · ');
  }
  var toastTimer = null;
  function toast(text, isError) {
    var t = $('toast');
    t.textContent = text;
    t.className = 'toast' + (isError ? ' error' : '');
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { t.hidden = true; }, 7000);
  }

  /* ---- the connection ----------------------------------------------------- */

  var es = null, retryTimer = null;
  function closeStream() {
    if (es) { es.close(); es = null; }
    clearTimeout(retryTimer);
  }
  function retryIn(ms) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, ms);
  }
  function needToken(message) {
    closeStream();
    $('auth-error').textContent = message;
    $('auth').hidden = false;
    document.body.classList.add('locked');
    setStatus('unauthorized', message);
    $('token-input').focus();
  }
  function applyInfo(info) {
    if (info.boot && info.boot !== state.boot) {
      /* another server process: its samples start over */
      state.samples = [];
      state.lastSeq = 0;
      state.boot = info.boot;
    }
    state.info = info;
    updateMeta();
  }
  function addSample(s) {
    if (s.seq <= state.lastSeq) return; /* a reconnection's replay */
    state.lastSeq = s.seq;
    state.received++;
    state.samples.push(s);
    var keep = s.t - (state.frozen ? 2 : 1) * HISTORY_MS - 2000;
    while (state.samples.length && state.samples[0].t < keep) state.samples.shift();
    if (!state.frozen) redraw(); else updateMeta();
  }
  /* Asks /debug/dashboard/info with the token first: EventSource reports no
   * status code, so a 401 would look like any other failure. */
  function connect() {
    closeStream();
    setStatus(state.samples.length ? 'reconnecting' : 'connecting');
    fetch('/debug/dashboard/info', { headers: authHeaders(), cache: 'no-store' }).then(function (r) {
      if (r.status === 401) {
        needToken(getToken()
          ? 'The admin token was refused (401 Unauthorized): it is not the one this server was started with.'
          : 'This admin listener needs its token: enter it below, or open the page with ?token=….');
        return null;
      }
      if (!r.ok) throw new Error('GET /debug/dashboard/info answered ' + r.status);
      return r.json();
    }).then(function (info) {
      if (!info) return;
      $('auth').hidden = true;
      document.body.classList.remove('locked');
      applyInfo(info);
      redraw(); /* the charts were hidden: size them again */
      if (info.streams >= info.max_streams) {
        setStatus('error', 'Too many dashboards are open (' + info.streams + ' of ' + info.max_streams +
          ', --max-dashboard-streams): close one. Retrying in 5 s.');
        retryIn(5000);
        return;
      }
      openStream();
    }).catch(function (e) {
      setStatus('error', 'Cannot reach the admin listener (' + e.message + '). Retrying in 3 s.');
      retryIn(3000);
    });
  }
  function openStream() {
    var t = getToken();
    es = new EventSource('/debug/dashboard/events' + (t ? '?token=' + encodeURIComponent(t) : ''));
    es.addEventListener('init', function (e) { applyInfo(JSON.parse(e.data)); });
    es.addEventListener('bye', function () {
      closeStream();
      setStatus('stopped', 'The server is shutting down; the page reconnects when it is back.');
      retryIn(5000);
    });
    es.onmessage = function (e) {
      if (state.status !== 'live') setStatus('live');
      addSample(JSON.parse(e.data));
    };
    es.onopen = function () { setStatus('live'); };
    es.onerror = function () {
      if (!es) return;
      if (es.readyState === EventSource.CLOSED) {
        /* refused (401, 503) or gone: find out why through fetch */
        retryIn(1000);
        setStatus('reconnecting', 'The event stream closed; reconnecting.');
      } else {
        setStatus('reconnecting', 'Lost the event stream; reconnecting.');
      }
    };
  }

  /* ---- actions ------------------------------------------------------------ */

  function post(path, btn, describe) {
    btn.disabled = true;
    fetch(path, { method: 'POST', headers: authHeaders(), cache: 'no-store' }).then(function (r) {
      return r.json().catch(function () { return null; }).then(function (j) {
        if (r.status === 401) {
          needToken('The admin token was refused (401 Unauthorized) for POST ' + path + '.');
          return;
        }
        if (!r.ok) {
          toast('POST ' + path + ' answered ' + r.status + (j && j.error ? ': ' + j.error.message : ''), true);
          return;
        }
        state.lastAction = { path: path, result: j };
        state.actions++;
        toast(describe(j));
      });
    }).catch(function (e) {
      toast('POST ' + path + ' failed: ' + e.message, true);
    }).then(function () { btn.disabled = false; });
  }
  $('btn-gc').addEventListener('click', function () {
    post('/debug/gc', this, function (j) {
      return 'GC #' + j.NumGC + ' done: pause ' + fmtUs(j.PauseNs / 1e3) + ', heap in use ' +
        fmtBytes(j.HeapInuse) + ', live ' + fmtBytes(j.HeapLive) + '.';
    });
  });
  $('btn-freeos').addEventListener('click', function () {
    post('/debug/freeosmemory', this, function (j) {
      return 'Released ' + fmtBytes(j.ReleasedNow) + ' to the OS after GC #' + j.NumGC +
        '; heap released now ' + fmtBytes(j.HeapReleased) + '.';
    });
  });
  $('btn-freeze').addEventListener('click', function () {
    state.frozen = !state.frozen;
    var n = state.samples.length;
    state.frozenAt = n ? state.samples[n - 1].t : 0;
    this.textContent = state.frozen ? 'Resume' : 'Freeze';
    setStatus(state.status, state.message);
    redraw();
  });
  $('btn-window').addEventListener('click', function () {
    var five = view.ms !== HISTORY_MS;
    view.ms = five ? HISTORY_MS : 60000;
    view.tick = five ? 60000 : 10000;
    state.windowMs = view.ms;
    this.textContent = five ? '1 min' : '5 min';
    this.title = 'Show the last ' + (five ? 'minute' : 'five minutes');
    redraw();
  });
  $('btn-forget').addEventListener('click', function () {
    setToken('');
    connect();
  });
  $('auth-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var t = $('token-input').value.trim();
    if (!t) return;
    setToken(t);
    $('token-input').value = '';
    $('auth-error').textContent = '';
    connect();
  });

  window.addEventListener('resize', redraw);
  if (window.matchMedia) {
    var mq = window.matchMedia('(prefers-color-scheme: dark)');
    var onScheme = function () { loadColors(); redraw(); };
    if (mq.addEventListener) mq.addEventListener('change', onScheme);
  }

  loadColors();
  takeTokenFromURL();
  connect();
})();
