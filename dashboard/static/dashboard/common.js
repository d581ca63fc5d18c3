/* Small helpers shared by the dashboard pages: API calls with the session and CSRF token, a
 * reconnecting websocket, formatting. No framework. */
(function () {
  "use strict";
  function cookie(name) {
    const m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : "";
  }
  async function api(method, url, body) {
    const opts = {method, credentials: "same-origin", headers: {"Accept": "application/json"}};
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    if (method !== "GET") opts.headers["X-CSRFToken"] = cookie("csrftoken");
    const response = await fetch(url, opts);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const error = (data && data.error) || {message: response.statusText, code: String(response.status)};
      const exc = new Error(error.message);
      exc.error = error; exc.status = response.status;
      throw exc;
    }
    return data;
  }
  /* A websocket that reconnects with backoff; every (re)connect starts with a fresh snapshot. */
  function liveSocket(path, onMessage, onState) {
    let delay = 500, socket = null, closed = false;
    function open() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      socket = new WebSocket(scheme + location.host + path);
      socket.onopen = () => { delay = 500; onState && onState("live"); };
      socket.onmessage = (e) => { const m = JSON.parse(e.data); if (m.kind !== "refused") onMessage(m); };
      socket.onclose = (e) => {
        // Refusals (4401 not signed in, 4403 forbidden, 4404 not found) will not change on retry.
        if (e.code >= 4400 && e.code < 4500) { onState && onState("refused"); return; }
        onState && onState("reconnecting");
        if (!closed) setTimeout(open, delay);
        delay = Math.min(delay * 2, 15000);
      };
    }
    open();
    return {close() { closed = true; socket && socket.close(); }};
  }
  function duration(s) {
    if (s === null || s === undefined || isNaN(s)) return "–";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? `${h}h ${m}m` : m ? `${m}m ${sec}s` : `${sec}s`;
  }
  function num(v, digits) {
    if (v === null || v === undefined || v === "") return "–";
    const n = Number(v);
    return Math.abs(n) < 1e-3 && n !== 0 ? n.toExponential(2) : n.toFixed(digits === undefined ? 4 : digits);
  }
  function bytes(n) {
    if (!n) return "–";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }
  window.BR = {api, liveSocket, duration, num, cookie, bytes};
})();
