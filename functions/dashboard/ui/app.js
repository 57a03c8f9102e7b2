// kmep dashboard: every number on this page comes from the platform's own
// APIs, called with the admin token as the Bearer credential.
"use strict";
(function () {
  const ADMIN = "/kmep/admin/v1";
  const SVC = "/mep/mec_service_mgmt/v1";
  const SUP = "/mep/mec_app_support/v1";
  const LCM = "/lcmcontroller/v1";
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem("kmep.adminToken") || "";
  let liveness = []; // {el, due, interval}
  let streamAbort = null;
  let refreshTimer = null;
  let openDL = null;

  class Refused extends Error {}

  async function api(path, opts) {
    opts = opts || {};
    const res = await fetch(path, Object.assign({}, opts, {
      headers: Object.assign({ Authorization: "Bearer " + token }, opts.headers || {}),
    }));
    if (res.status === 401 || res.status === 403) {
      throw new Refused((await res.text()) || res.statusText);
    }
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(path + ": " + res.status + " " + detail);
    }
    return res.status === 204 ? null : res.json();
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function fill(id, rows, each) {
    const tbody = $(id).querySelector("tbody");
    tbody.replaceChildren();
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = cell(tr, "none", "empty");
      td.colSpan = $(id).querySelectorAll("th").length;
      tbody.appendChild(tr);
      return;
    }
    for (const r of rows) {
      const tr = document.createElement("tr");
      each(tr, r);
      tbody.appendChild(tr);
    }
  }

  const orEmpty = (p) => p.catch((e) => { if (e instanceof Refused) throw e; return []; });

  async function refresh() {
    const [apps, instances, rs, peers, dls] = await Promise.all([
      api(ADMIN + "/apps"), api(ADMIN + "/instances"), api(ADMIN + "/rule_statuses"),
      api(ADMIN + "/mesh_peers"), api(ADMIN + "/dead_letters?limit=50")]);
    const perApp = await Promise.all(apps.map(async (a) => {
      const id = encodeURIComponent(a.appInstanceId);
      const [svcs, s1, s2, tr, dr] = await Promise.all([
        orEmpty(api(SVC + "/applications/" + id + "/services")),
        orEmpty(api(SVC + "/applications/" + id + "/subscriptions")),
        orEmpty(api(SUP + "/applications/" + id + "/subscriptions")),
        orEmpty(api(SUP + "/applications/" + id + "/traffic_rules")),
        orEmpty(api(SUP + "/applications/" + id + "/dns_rules"))]);
      const links = [].concat((s1._links || {}).subscriptions || [], (s2._links || {}).subscriptions || []);
      const subs = await Promise.all(links.map((l) => orEmpty(api(new URL(l.href, location.href).pathname))));
      const live = await Promise.all(svcs.map((s) => s.livenessInterval > 0
        ? api(SVC + "/applications/" + id + "/services/" + encodeURIComponent(s.serInstanceId) + "/liveness").catch(() => null)
        : Promise.resolve(null)));
      return { app: a.appInstanceId, svcs, subs, live, traffic: tr, dns: dr };
    }));
    const tenants = [...new Set(instances.map((i) => i.tenantId))];
    const pkgs = (await Promise.all(tenants.map((t) => orEmpty(api(LCM + "/tenants/" + encodeURIComponent(t) + "/packages"))))).flat();
    render(apps, perApp, instances, rs, peers, dls, pkgs);
    $("error").hidden = true;
  }

  function render(apps, perApp, instances, rs, peers, dls, pkgs) {
    const services = [];
    liveness = [];
    for (const p of perApp) p.svcs.forEach((s, i) => services.push({ app: p.app, s, l: p.live[i] }));
    services.sort((a, b) => a.s.serName.localeCompare(b.s.serName));
    fill("services", services, (tr, { app, s, l }) => {
      tr.dataset.service = s.serName;
      cell(tr, s.serName);
      cell(tr, app);
      cell(tr, s.state, "state state-" + s.state);
      const td = cell(tr, s.livenessInterval > 0 ? "" : "no liveness", "liveness");
      if (l) liveness.push({ el: td, due: (l.timeStamp.seconds + l.timeStamp.nanoSeconds / 1e9 + l.interval) * 1000, state: l.state, interval: l.interval });
      cell(tr, s.serInstanceId);
    });
    tick();
    fill("apps", apps, (tr, a) => {
      cell(tr, a.appInstanceId); cell(tr, a.appName); cell(tr, a.accessKeyId); cell(tr, (a.requiredServices || []).join(", "));
    });
    const subs = [];
    for (const p of perApp) for (const s of p.subs) if (s && s.subscriptionType) subs.push({ app: p.app, s });
    fill("subscriptions", subs, (tr, { app, s }) => {
      cell(tr, app); cell(tr, s.subscriptionType); cell(tr, s.callbackReference);
      const self = ((s._links || {}).self || {}).href || "";
      cell(tr, self.slice(self.lastIndexOf("/") + 1));
    });
    fill("deadletters", dls, (tr, d) => {
      const r = d.record || {};
      tr.dataset.deadletter = d.id;
      cell(tr, r.receivedAt); cell(tr, r.type); cell(tr, r.subject);
      cell(tr, [r.errorCode, r.errorDest, r.errorData].filter(Boolean).join(" "));
      const b = document.createElement("button");
      b.textContent = "Open";
      b.className = "open";
      b.addEventListener("click", () => show(d));
      tr.appendChild(document.createElement("td")).appendChild(b);
    });
    if (openDL && !dls.some((d) => d.id === openDL.id) && $("dl-result").textContent === "") $("deadletter").hidden = true;
    const status = {};
    for (const st of rs.statuses || []) status[st.appInstanceId + "/" + st.trafficRuleId] = st;
    const rules = [];
    for (const p of perApp) {
      for (const r of p.traffic) rules.push({ app: p.app, kind: "traffic", id: r.trafficRuleId, state: r.state, upf: status[p.app + "/" + r.trafficRuleId] });
      for (const r of p.dns) rules.push({ app: p.app, kind: "DNS", id: r.dnsRuleId + " (" + r.domainName + ")", state: r.state, upf: null });
    }
    fill("rules", rules, (tr, r) => {
      cell(tr, r.app); cell(tr, r.kind); cell(tr, r.id); cell(tr, r.state, "state-" + r.state);
      cell(tr, r.kind === "DNS" ? "answered by the mesh DNS" : r.upf ? r.upf.state + (r.upf.reason ? ": " + r.upf.reason : "") : "not applied yet (" + rs.upf + ")",
        r.upf ? "status-" + r.upf.state : "");
    });
    fill("instances", instances, (tr, i) => {
      cell(tr, i.appInstanceId); cell(tr, i.tenantId); cell(tr, i.packageId); cell(tr, i.hostIp);
      cell(tr, i.namespace + "/" + i.release); cell(tr, i.state + (i.reason ? ": " + i.reason : ""), "state-" + i.state);
    });
    fill("packages", pkgs, (tr, p) => { cell(tr, p.tenantId); cell(tr, p.packageId); cell(tr, p.appName); cell(tr, p.appVersion); cell(tr, p.size); });
    fill("peers", peers, (tr, p) => { cell(tr, p.id); cell(tr, p.node); cell(tr, (p.addrs || []).join(" ")); cell(tr, p.relay ? "yes" : ""); });
  }

  function show(d) {
    openDL = d;
    $("dl-id").textContent = d.id;
    $("dl-record").textContent = JSON.stringify(d.record, null, 2);
    $("dl-result").textContent = "";
    $("dl-redeliver").disabled = false;
    $("deadletter").hidden = false;
  }

  async function redeliver() {
    if (!openDL) return;
    $("dl-redeliver").disabled = true;
    try {
      const r = await api(ADMIN + "/dead_letters/" + encodeURIComponent(openDL.id) + "/redeliver", { method: "POST" });
      $("dl-result").textContent = "redelivered (event " + r.eventId + ")";
      schedule();
    } catch (e) {
      $("dl-result").textContent = "redelivery failed: " + e.message;
      $("dl-redeliver").disabled = false;
    }
  }

  // tick redraws the liveness countdowns between refreshes.
  function tick() {
    const now = Date.now();
    for (const l of liveness) {
      const left = (l.due - now) / 1000;
      if (l.state === "SUSPENDED") {
        l.el.textContent = "suspended (no heartbeat in " + l.interval + " s)";
        l.el.classList.add("overdue");
      } else if (left >= 0) {
        l.el.textContent = "heartbeat due in " + left.toFixed(1) + " s";
        l.el.classList.remove("overdue");
      } else {
        l.el.textContent = "heartbeat overdue by " + (-left).toFixed(1) + " s";
        l.el.classList.add("overdue");
      }
    }
  }

  function fail(e) {
    if (e instanceof Refused) { logout("the admin token was refused"); return; }
    $("error").textContent = e.message;
    $("error").hidden = false;
  }

  function schedule() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => refresh().catch(fail), 100);
  }

  // follow reads the change stream (server-sent events, read with fetch so
  // that it carries the Bearer header) and refetches on every change.
  async function follow() {
    let last = "";
    while (token) {
      streamAbort = new AbortController();
      try {
        const headers = { Authorization: "Bearer " + token };
        if (last) headers["Last-Event-ID"] = last;
        const res = await fetch(ADMIN + "/events", { headers, signal: streamAbort.signal });
        if (res.status === 401 || res.status === 403) { logout("the admin token was refused"); return; }
        if (!res.ok) throw new Error("events: " + res.status);
        $("live").textContent = "live"; $("live").classList.remove("off");
        schedule(); // whatever changed while not following
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let ev = "", id = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) ev = line.slice(7);
              if (line.startsWith("id: ")) id = line.slice(4);
            }
            if (id) last = id;
            if (ev === "change") schedule();
          }
        }
      } catch (e) {
        if (!token) return;
      }
      $("live").textContent = "reconnecting"; $("live").classList.add("off");
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  function login(t) {
    token = t;
    return api(ADMIN + "/apps").then(() => {
      sessionStorage.setItem("kmep.adminToken", token);
      $("login").hidden = true; $("board").hidden = false; $("logout").hidden = false;
      refresh().catch(fail);
      follow();
    });
  }

  function logout(why) {
    token = "";
    sessionStorage.removeItem("kmep.adminToken");
    if (streamAbort) streamAbort.abort();
    $("board").hidden = true; $("logout").hidden = true; $("login").hidden = false;
    $("live").textContent = "offline"; $("live").classList.add("off");
    for (const id of ["services", "apps", "subscriptions", "deadletters", "rules", "instances", "packages", "peers"]) {
      $(id).querySelector("tbody").replaceChildren();
    }
    $("login-error").textContent = why || "";
    $("login-error").hidden = !why;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      login($("token").value.trim()).catch((e) => logout(e instanceof Refused ? "the admin token was refused" : e.message));
    });
    $("logout").addEventListener("click", () => logout(""));
    $("dl-redeliver").addEventListener("click", redeliver);
    $("dl-close").addEventListener("click", () => { $("deadletter").hidden = true; openDL = null; });
    setInterval(tick, 250);
    // Dead letters, UPF statuses and mesh peers are not on the change
    // stream: refetch every few seconds as well.
    setInterval(() => { if (token && !document.hidden) schedule(); }, 3000);
    if (token) login(token).catch(() => logout(""));
  });
})();
