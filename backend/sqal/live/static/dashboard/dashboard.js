/* SQAL live dashboard: REST for the initial state, /ws/dashboard/ for live samples and figures.
 * Plain browser JavaScript, no dependency. Data is written with textContent only (never parsed as HTML). */
(function () {
  "use strict";

  var GRADES = ["A", "B", "C", "REJECT"];
  var THRESHOLDS = [["A", 0.85], ["B", 0.72], ["C", 0.55]];
  var MAX_ROWS = 50;
  var SERIES_MINUTES = 60;
  var SVG_NS = "http://www.w3.org/2000/svg";

  var state = { samples: [], series: [], fresh: {}, renderPending: false, socket: null, backoff: 500, live: false };

  function $(id) { return document.getElementById(id); }

  function getJSON(path) {
    return fetch(path, { headers: { Accept: "application/json" } }).then(function (response) {
      if (!response.ok) { throw new Error(path + " answered " + response.status); }
      return response.json();
    });
  }

  function fixed(value, digits) { return value === null || value === undefined ? "—" : Number(value).toFixed(digits); }
  function percent(value) { return value === null || value === undefined ? "—" : Number(value).toFixed(1) + " %"; }
  function clock(iso) { return iso ? new Date(iso).toLocaleTimeString() : "—"; }
  function sampleKey(sample) { return sample.device_id + "\u0000" + sample.sample_id; }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) { td.className = className; }
    row.appendChild(td);
    return td;
  }

  function gradeCell(row, grade) {
    var td = document.createElement("td");
    if (grade) {
      var badge = document.createElement("span");
      badge.className = "grade grade-" + grade;
      badge.textContent = grade;
      td.appendChild(badge);
    } else {
      td.textContent = "—";
    }
    row.appendChild(td);
  }

  function svg(tag, attributes, parent) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attributes).forEach(function (name) { node.setAttribute(name, attributes[name]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function svgText(parent, x, y, text, anchor, className) {
    var node = svg("text", { x: x, y: y, "text-anchor": anchor || "start" }, parent);
    if (className) { node.setAttribute("class", className); }
    node.textContent = text;
    return node;
  }

  /* ---- connection state ---- */
  function setConnection(kind) {
    var pill = $("connection");
    var labels = { live: "live", degraded: "connected · live feed paused", reconnecting: "reconnecting…", connecting: "connecting…" };
    pill.dataset.state = kind;
    pill.textContent = labels[kind];
  }

  /* ---- figures ---- */
  function renderMetrics(m) {
    $("kpi-today").textContent = m.samples_today.toLocaleString();
    $("kpi-hour").textContent = m.samples_last_hour.toLocaleString() + " in the last hour";
    $("kpi-score").textContent = fixed(m.average_quality_score, 3);
    $("kpi-reject").textContent = percent(m.reject_rate_percent);
    $("kpi-conformity").textContent = percent(m.conformity_rate_percent);
    $("kpi-devices").textContent = String(m.active_devices);
    $("kpi-devices-total").textContent = "of " + m.devices_total + " enabled";
    $("kpi-throughput").textContent = fixed(m.throughput_per_second * 60, 1);
    $("updated").textContent = clock(m.generated_at);
    renderGrades(m.grade_distribution, m.samples_today);
    renderDefects(m.top_defects);
  }

  function renderGrades(distribution, total) {
    var chart = $("grade-chart");
    chart.replaceChildren();
    var widest = Math.max.apply(null, GRADES.map(function (g) { return distribution[g] || 0; }).concat([1]));
    GRADES.forEach(function (grade, index) {
      var count = distribution[grade] || 0;
      var y = 8 + index * 35;
      svgText(chart, 0, y + 17, grade, "start", "bar-label");
      svg("rect", { x: 58, y: y, width: Math.max(2, 170 * count / widest), height: 24, rx: 4, "class": "fill-" + grade }, chart);
      var share = total ? " · " + (100 * count / total).toFixed(1) + " %" : "";
      svgText(chart, 360, y + 17, count.toLocaleString() + share, "end");
    });
  }

  function renderDefects(defects) {
    var list = $("defects");
    list.replaceChildren();
    if (!defects.length) {
      var empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "none today";
      list.appendChild(empty);
      return;
    }
    defects.forEach(function (defect) {
      var item = document.createElement("li");
      var name = document.createElement("span");
      name.textContent = defect.code.replace(/_/g, " ");
      var count = document.createElement("strong");
      count.textContent = defect.count.toLocaleString();
      item.appendChild(name);
      item.appendChild(count);
      list.appendChild(item);
    });
  }

  /* ---- quality score over time (1-minute buckets, last hour) ---- */
  function addToSeries(sample) {
    var start = Math.floor(Date.parse(sample.timestamp) / 60000) * 60000;
    var point = state.series.find(function (p) { return p.t === start; });
    if (!point) {
      point = { t: start, count: 0, sum: 0 };
      state.series.push(point);
      state.series.sort(function (a, b) { return a.t - b.t; });
    }
    point.count += 1;
    point.sum += Number(sample.score);
  }

  function renderSeries() {
    var chart = $("score-chart");
    chart.replaceChildren();
    var left = 34, right = 630, top = 8, bottom = 150;
    var end = Math.floor(Date.now() / 60000) * 60000;
    var begin = end - (SERIES_MINUTES - 1) * 60000;
    state.series = state.series.filter(function (p) { return p.t >= begin; });
    function x(t) { return left + (right - left) * (t - begin) / (end - begin); }
    function y(score) { return bottom - (bottom - top) * score; }
    [0, 0.25, 0.5, 0.75, 1].forEach(function (score) {
      svg("line", { x1: left, x2: right, y1: y(score), y2: y(score), "class": "grid-line" }, chart);
      svgText(chart, left - 6, y(score) + 4, score.toFixed(2), "end");
    });
    THRESHOLDS.forEach(function (threshold) {
      svg("line", { x1: left, x2: right, y1: y(threshold[1]), y2: y(threshold[1]), "class": "threshold" }, chart);
      svgText(chart, right, y(threshold[1]) - 3, threshold[0], "end");
    });
    svgText(chart, left, 166, new Date(begin).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    svgText(chart, right, 166, new Date(end).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }), "end");
    // One line per run of consecutive minutes: a gap in production is a gap in the line.
    var runs = [];
    state.series.forEach(function (p, index) {
      if (!p.count) { return; }
      var previous = state.series[index - 1];
      if (!previous || p.t - previous.t > 60000 || !runs.length) { runs.push([]); }
      runs[runs.length - 1].push([x(p.t), y(p.sum / p.count)]);
    });
    runs.forEach(function (run) {
      if (run.length > 1) {
        svg("polyline", { points: run.map(function (p) { return p[0].toFixed(1) + "," + p[1].toFixed(1); }).join(" "), "class": "series" }, chart);
      }
      run.forEach(function (p) { svg("circle", { cx: p[0], cy: p[1], r: 2.5, "class": "dot" }, chart); });
    });
  }

  function loadSeries() {
    return getJSON("/api/sqal/stats/timeseries?bucket=1m").then(function (body) {
      state.series = body.points.filter(function (p) { return p.count > 0; }).map(function (p) {
        return { t: Date.parse(p.start), count: p.count, sum: p.average_score * p.count };
      });
      renderSeries();
    });
  }

  /* ---- latest samples ---- */
  function sampleRow(sample, fresh) {
    var row = document.createElement("tr");
    row.dataset.sampleId = sample.sample_id;
    row.dataset.deviceId = sample.device_id;
    if (fresh) { row.className = "fresh"; }
    cell(row, clock(sample.timestamp));
    cell(row, sample.device_id);
    cell(row, sample.sample_id);
    gradeCell(row, sample.grade);
    cell(row, fixed(sample.score, 3));
    var defects = sample.defects || [];
    cell(row, defects.length ? defects.join(", ").replace(/_/g, " ") : "—");
    return row;
  }

  function renderSamples(fresh) {
    var body = $("samples").tBodies[0];
    body.replaceChildren.apply(body, state.samples.map(function (sample) {
      return sampleRow(sample, Boolean(fresh[sampleKey(sample)]));
    }));
  }

  function addSample(sample) {
    var key = sampleKey(sample);
    if (state.samples.some(function (s) { return sampleKey(s) === key; })) { return; }
    state.samples.push(sample);
    state.samples.sort(function (a, b) { return Date.parse(b.timestamp) - Date.parse(a.timestamp); });
    state.samples.length = Math.min(state.samples.length, MAX_ROWS);
    state.fresh[key] = true;
    addToSeries(sample);
    scheduleRender();
  }

  // A busy line sends many samples a second: draw at most ten times a second.
  function scheduleRender() {
    if (state.renderPending) { return; }
    state.renderPending = true;
    window.setTimeout(function () {
      state.renderPending = false;
      renderSamples(state.fresh);
      state.fresh = {};
      renderSeries();
    }, 100);
  }

  function loadSamples() {
    return getJSON("/api/sqal/samples?limit=" + MAX_ROWS).then(function (body) {
      var known = {};
      state.samples.concat(body.items).forEach(function (s) { known[sampleKey(s)] = s; });
      state.samples = Object.keys(known).map(function (k) { return known[k]; });
      state.samples.sort(function (a, b) { return Date.parse(b.timestamp) - Date.parse(a.timestamp); });
      state.samples.length = Math.min(state.samples.length, MAX_ROWS);
      renderSamples({});
    });
  }

  /* ---- devices ---- */
  function loadDevices() {
    return getJSON("/api/sqal/devices").then(function (body) {
      var devices = body.items.slice().sort(function (a, b) {
        return (b.online - a.online) || (b.enabled - a.enabled) || a.device_id.localeCompare(b.device_id);
      });
      var rows = devices.map(function (device) {
        var row = document.createElement("tr");
        row.dataset.deviceId = device.device_id;
        cell(row, device.device_id);
        cell(row, device.online ? "● online" : device.enabled ? "○ offline" : "disabled", device.online ? "online" : "offline");
        cell(row, clock(device.last_seen_at));
        cell(row, device.firmware_version || "—");
        cell(row, device.samples_today.toLocaleString());
        gradeCell(row, device.latest_grade);
        return row;
      });
      var tbody = $("devices").tBodies[0];
      tbody.replaceChildren.apply(tbody, rows);
    });
  }

  /* ---- live socket, reconnecting by itself ---- */
  function onFrame(event) {
    var frame;
    try { frame = JSON.parse(event.data); } catch (error) { return; }
    if (frame.type === "hello") {
      state.backoff = 500;
      state.live = frame.live;
      setConnection(frame.live ? "live" : "degraded");
    } else if (frame.type === "status") {
      state.live = frame.live;
      setConnection(frame.live ? "live" : "degraded");
      if (frame.live) { refresh(); }
    } else if (frame.type === "metrics") {
      renderMetrics(frame.metrics);
    } else if (frame.type === "sample") {
      addSample(frame.sample);
    }
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws/dashboard/");
    state.socket = socket;
    socket.onmessage = onFrame;
    socket.onopen = function () { refresh(); };
    socket.onclose = function () {
      if (state.socket !== socket) { return; }
      state.socket = null;
      setConnection("reconnecting");
      var delay = state.backoff * (0.5 + Math.random());
      state.backoff = Math.min(state.backoff * 2, 10000);
      window.setTimeout(connect, delay);
    };
  }

  function refresh() {
    // What happened while the socket was down comes from REST; the socket carries what follows.
    return Promise.all([loadSamples(), loadDevices(), loadSeries(),
      getJSON("/api/dashboard/metrics/").then(renderMetrics)]).catch(function (error) {
      console.warn("dashboard refresh failed", error);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setConnection("connecting");
    renderSeries();
    refresh();
    connect();
    window.setInterval(function () { loadDevices().catch(function () {}); }, 10000);
    window.setInterval(function () { loadSeries().catch(function () {}); }, 60000);
    window.setInterval(renderSeries, 15000);
  });
}());
