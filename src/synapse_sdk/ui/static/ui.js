// synapse ui: a running run's page follows the run (server-sent events); nothing else.
'use strict';
(function () {
  // the runs list, while some run on it is running: its table again every 2 s
  const list = document.querySelector('main[data-refresh]');
  if (!list) return;
  const timer = window.setInterval(async function () {
    const answer = await fetch(window.location.href, {credentials: 'same-origin'});
    if (!answer.ok) return;
    const fresh = new DOMParser().parseFromString(await answer.text(), 'text/html');
    const table = fresh.querySelector('table.runs');
    const old = document.querySelector('table.runs');
    if (table && old) old.replaceWith(table);
    if (!fresh.querySelector('main[data-refresh]')) window.clearInterval(timer);
  }, 2000);
})();
(function () {
  const main = document.querySelector('main[data-run]');
  if (!main || main.dataset.live !== '1') return;
  const run = main.dataset.run;
  const source = new EventSource('/runs/' + encodeURIComponent(run) + '/events?offset=' + main.dataset.offset);
  const log = document.getElementById('log');

  function badge(status) {
    const old = document.querySelector('#status .badge');
    if (old && old.textContent !== status) { old.textContent = status; old.dataset.changed = '1'; }
  }
  function progress(percent) {
    const bar = document.getElementById('progress');
    if (!bar) return;
    bar.dataset.percent = String(percent);
    bar.querySelector('.fill').style.width = Math.max(0, Math.min(100, percent)) + '%';
    bar.querySelector('.pct').textContent = percent + '%';
  }
  function job(state) {
    const where = document.getElementById('job');
    if (!where || !state) return;
    const code = state.exit_code === null ? 'is running\u2026' : (state.exit_code === 0 ? 'done' : 'exit code ' + state.exit_code);
    where.textContent = state.command + ' ' + code + (state.message ? ': ' + state.message : '');
  }
  function apply(state) {
    badge(state.status);
    progress(state.progress);
    document.getElementById('duration').textContent = state.duration;
    document.getElementById('error').textContent = state.error || '';
    job(state.job);
    if (!state.active) {
      const cancel = document.querySelector('button.cancel');
      if (cancel) cancel.disabled = true;
    }
  }
  source.addEventListener('state', function (event) { apply(JSON.parse(event.data)); });
  source.addEventListener('log', function (event) {
    const follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.insertAdjacentHTML('beforeend', JSON.parse(event.data).html);
    if (follow) log.scrollTop = log.scrollHeight;
  });
  source.addEventListener('sections', function (event) {
    const parts = JSON.parse(event.data);
    for (const name of Object.keys(parts)) {
      const where = document.getElementById(name === 'progress' ? 'curve' : name);
      if (where) where.innerHTML = parts[name];
    }
  });
  source.addEventListener('end', function (event) {
    apply(JSON.parse(event.data));
    source.close();
    window.setTimeout(function () { window.location.reload(); }, 300);  // how it ended, in full
  });
})();
