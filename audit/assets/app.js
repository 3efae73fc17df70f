// The registry page's only script (served as /app.js; the CSP allows nothing inline).
// Live timeline: audit entries over Server-Sent Events, added with textContent
// (never as HTML); the instance table is fetched again (server-escaped HTML) when
// the server says the registry changed.
'use strict';
(function () {
  const timeline = document.getElementById('timeline');
  const table = document.getElementById('table');
  const live = document.getElementById('live');
  if (!timeline) return;
  const text = (tag, value, cls) => {
    const el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  };
  let refresh;
  const reloadTable = () => {
    if (!table) return;
    clearTimeout(refresh);
    refresh = setTimeout(async () => {
      const u = new URL(location.href);
      u.searchParams.set('partial', 'table');
      try {
        const res = await fetch(u, { credentials: 'same-origin' });
        if (res.ok) table.innerHTML = await res.text(); // rendered and escaped by the server
      } catch { /* the next event tries again */ }
    }, 100);
  };
  const es = new EventSource('/events');
  es.onopen = () => { if (live) live.textContent = '(live)'; };
  es.onerror = () => { if (live) live.textContent = '(reconnecting…)'; };
  es.onmessage = (ev) => {
    let e;
    try { e = JSON.parse(ev.data); } catch { return; }
    const li = document.createElement('li');
    li.dataset.id = e.id;
    li.className = 'new';
    li.append(text('time', e.time), ' ', text('b', e.action), ' ', text('span', e.service, 'svc'), ' ', text('code', e.instance), ' ',
      text('span', `${e.source} ${e.originName}${e.host ? ` on ${e.host}` : ''} — ${e.reason} by ${e.owner}${e.status ? ` status ${e.status}` : ''}${e.detail ? ` ${e.detail}` : ''}`));
    timeline.prepend(li);
    while (timeline.children.length > 200) timeline.lastElementChild.remove();
  };
  // the server read the registry again and something changed
  es.addEventListener('registry', reloadTable);
})();
