/* Scoreboard page: renders GET /top, follows GET /stream, falls back to polling GET /top.
 *
 * The URL picks the board and period: ?board=wins&period=weekly reads /boards/wins/top and
 * /boards/wins/stream (main's all-time period, the default, reads /top and /stream); &pin=1
 * hides the switcher, so a wall screen stays on one board. Switching loads the new URL.
 *
 * User text is only ever written through textContent: the page runs under a
 * Content-Security-Policy without 'unsafe-inline', and display names are untrusted.
 */
'use strict';

(function () {
  const POLL_MS = 2000;           // polling period while the stream is unavailable
  const STREAM_RETRY_MS = 12000;  // how often polling mode tries the stream again
  const OPEN_TIMEOUT_MS = 5000;   // a stream not open by then counts as failed
  const MAX_STREAM_ERRORS = 3;    // stream errors in a row before falling back to polling
  const MARK_MS = 6000;           // how long a rank-change marker stays on a row
  const ANNOUNCED = 3;            // rank changes spelled out in the live summary

  const PERIOD_NAMES = { all: 'All time', daily: 'Today', weekly: 'This week', monthly: 'This month' };
  const ARROWS = { up: '\u25B2', down: '\u25BC', new: 'new' };
  const LABELS = { up: 'moved up', down: 'moved down', new: 'new in the top 10' };

  const el = {
    root: document.documentElement,
    status: document.getElementById('status'),
    statusText: document.getElementById('status-text'),
    rows: document.getElementById('rows'),
    empty: document.getElementById('empty'),
    summary: document.getElementById('summary'),
    updated: document.getElementById('updated'),
    title: document.getElementById('title'),
    periodLine: document.getElementById('period-line'),
    switcher: document.getElementById('switcher'),
    boardSelect: document.getElementById('board-select'),
    periodSelect: document.getElementById('period-select'),
  };
  const view = readView();
  const numbers = new Intl.NumberFormat();

  let version = null;        // version of the rendered state, sent as lastEventId / If-None-Match
  let previous = null;       // Map userId -> {rank, score} of the rendered state; null before the first
  const marks = new Map();   // userId -> {move, until}: rank changes still shown
  let sweepTimer = 0;

  let source = null;         // the current EventSource, if any
  let streamErrors = 0;
  let openTimer = 0;
  let polling = false;
  let pollTimer = 0;
  let retryTimer = 0;

  // ---------------------------------------------------------------- board and period

  function readView() {
    const params = new URLSearchParams(window.location.search);
    const board = params.get('board') || 'main';
    const period = params.get('period') || 'all';
    return {
      board: board, period: period, pinned: params.get('pin') === '1',
      main: board === 'main' && period === 'all',
    };
  }

  // main's all-time period keeps its own endpoints; every other pair is under /boards/{id}.
  function endpoint(name) {
    if (view.main) return '/' + name;
    return '/boards/' + encodeURIComponent(view.board) + '/' + name + '?period=' + encodeURIComponent(view.period);
  }

  function withLastEventId(url) {
    if (!version) return url;
    return url + (url.indexOf('?') < 0 ? '?' : '&') + 'lastEventId=' + encodeURIComponent(version);
  }

  function showPeriod(body) {
    if (typeof body.periodKey !== 'string' || body.period === 'all') return;
    el.periodLine.hidden = false;
    setText(el.periodLine, (PERIOD_NAMES[body.period] || body.period) + ' \u00B7 ' + body.periodKey);
  }

  let boards = [];           // GET /boards, for the switcher

  async function loadSwitcher() {
    try {
      const response = await fetch('/boards', { cache: 'no-store' });
      if (!response.ok) return;
      boards = (await response.json()).boards;
    } catch (err) {
      return;  // no switcher: the board in the URL still shows
    }
    const current = boards.find(function (b) { return b.id === view.board; });
    if (current) {
      setText(el.title, String(current.title));
      document.title = String(current.title);
    }
    if (view.pinned) return;
    fillSelect(el.boardSelect, boards.map(function (b) { return [b.id, String(b.title)]; }), view.board);
    const periods = current ? current.periods : [view.period];
    fillSelect(el.periodSelect, periods.map(function (p) { return [p, PERIOD_NAMES[p] || p]; }), view.period);
    el.switcher.hidden = false;
  }

  function fillSelect(select, options, selected) {
    for (const [value, text] of options) {
      const option = document.createElement('option');
      option.value = value;
      option.textContent = text;
      option.selected = value === selected;
      select.appendChild(option);
    }
  }

  // A new board keeps the period when it has it, else takes its first.
  function switchTo(board, period) {
    const params = new URLSearchParams();
    if (board !== 'main' || period !== 'all') {
      params.set('board', board);
      params.set('period', period);
    }
    const query = params.toString();
    window.location.search = query ? '?' + query : '';
  }

  el.boardSelect.addEventListener('change', function () {
    const board = boards.find(function (b) { return b.id === el.boardSelect.value; });
    const periods = board ? board.periods : ['all'];
    switchTo(el.boardSelect.value, periods.indexOf(view.period) >= 0 ? view.period : periods[0]);
  });
  el.periodSelect.addEventListener('change', function () {
    switchTo(view.board, el.periodSelect.value);
  });

  // ---------------------------------------------------------------- rendering

  function label(entry) {
    return entry.displayName ? String(entry.displayName) : String(entry.userId);
  }

  function render(body) {
    if (!body || !Array.isArray(body.entries)) return;
    if (version !== null && body.version === version) return;
    version = body.version == null ? null : String(body.version);
    el.root.dataset.version = version || '';
    const changes = diff(body.entries);
    ensureRows(body.entries.length);
    body.entries.forEach(function (entry, i) {
      fillRow(el.rows.rows[i], entry, changes.flash.has(String(entry.userId)),
        changes.bumped.has(String(entry.userId)));
    });
    el.empty.hidden = body.entries.length > 0;
    showPeriod(body);
    showUpdated(body.generatedAt);
    announce(changes.moves);
    scheduleSweep();
  }

  // Compares entries with the rendered state: which users moved, which scores changed.
  function diff(entries) {
    const now = Date.now();
    const next = new Map();
    const result = { moves: [], flash: new Set(), bumped: new Set() };
    for (const entry of entries) {
      const id = String(entry.userId);
      next.set(id, { rank: entry.rank, score: entry.score });
      if (previous === null) continue;
      const before = previous.get(id);
      const move = !before ? 'new' : entry.rank < before.rank ? 'up'
        : entry.rank > before.rank ? 'down' : null;
      if (move) {
        marks.set(id, { move: move, until: now + MARK_MS });
        if (move !== 'down') result.flash.add(id);  // the user who moved down is not the news
        result.moves.push({ entry: entry, move: move });
      }
      if (before && before.score !== entry.score) result.bumped.add(id);
    }
    for (const id of Array.from(marks.keys())) {
      if (!next.has(id)) marks.delete(id);
    }
    previous = next;
    return result;
  }

  function ensureRows(count) {
    while (el.rows.rows.length < count) el.rows.appendChild(makeRow());
    while (el.rows.rows.length > count) el.rows.deleteRow(-1);
  }

  function makeRow() {
    const tr = document.createElement('tr');
    tr.dataset.move = '';
    const rank = cell('td', 'rank');
    rank.appendChild(span('num'));
    const mark = span('mark');
    mark.setAttribute('aria-hidden', 'true');
    rank.appendChild(mark);
    const name = cell('th', 'name');
    name.scope = 'row';
    name.appendChild(span('label'));
    tr.append(rank, name, cell('td', 'score'));
    // The flash runs on the cells; their animationend events bubble up to the row.
    tr.addEventListener('animationend', function (event) {
      if (event.animationName === 'bump') event.target.classList.remove('bump');
      else if (event.animationName.indexOf('flash') === 0) tr.classList.remove('flash');
    });
    return tr;
  }

  function cell(tag, className) {
    const node = document.createElement(tag);
    node.className = className;
    return node;
  }

  function span(className) {
    return cell('span', className);
  }

  function fillRow(tr, entry, flash, bumped) {
    const id = String(entry.userId);
    const [rankCell, nameCell, scoreCell] = tr.cells;
    tr.dataset.userId = id;
    tr.dataset.rank = String(entry.rank);
    setText(rankCell.querySelector('.num'), String(entry.rank));
    const nameLabel = nameCell.querySelector('.label');
    setText(nameLabel, label(entry));
    nameLabel.title = entry.displayName ? id : '';
    scoreCell.dataset.score = String(entry.score);
    setText(scoreCell, numbers.format(entry.score));
    applyMark(tr, marks.get(id));
    if (flash) restartAnimation(tr, 'flash');
    if (bumped) restartAnimation(scoreCell, 'bump');
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function applyMark(tr, mark) {
    const move = mark ? mark.move : '';
    if ((tr.dataset.move || '') === move) return;
    tr.dataset.move = move;
    const node = tr.querySelector('.mark');
    node.textContent = move ? ARROWS[move] : '';
    node.title = move ? LABELS[move] : '';
  }

  function restartAnimation(node, className) {
    node.classList.remove(className);
    void node.offsetWidth;  // reflow, so that re-adding the class starts the animation again
    node.classList.add(className);
  }

  // Removes rank-change markers once they are older than MARK_MS.
  function scheduleSweep() {
    clearTimeout(sweepTimer);
    sweepTimer = 0;
    if (marks.size === 0) return;
    const next = Math.min.apply(null, Array.from(marks.values(), function (m) { return m.until; }));
    sweepTimer = setTimeout(sweep, Math.max(0, next - Date.now()) + 50);
  }

  function sweep() {
    const now = Date.now();
    for (const [id, mark] of Array.from(marks)) {
      if (mark.until <= now) marks.delete(id);
    }
    for (const tr of Array.from(el.rows.rows)) applyMark(tr, marks.get(tr.dataset.userId));
    scheduleSweep();
  }

  function showUpdated(generatedAt) {
    const when = generatedAt ? new Date(generatedAt) : new Date();
    const valid = !isNaN(when.getTime()) ? when : new Date();
    el.updated.dateTime = valid.toISOString();
    el.updated.textContent = valid.toLocaleTimeString();
  }

  // Upward moves and new entries are spelled out; the matching downward moves are implied.
  function announce(moves) {
    const told = moves.filter(function (m) { return m.move !== 'down'; });
    if (told.length === 0) return;
    const parts = told.slice(0, ANNOUNCED).map(function (m) {
      const verb = m.move === 'new' ? 'entered the top 10 at rank ' : 'moved to rank ';
      return label(m.entry) + ' ' + verb + m.entry.rank;
    });
    if (told.length > ANNOUNCED) parts.push((told.length - ANNOUNCED) + ' more changes');
    el.summary.textContent = parts.join('; ') + '.';
  }

  function setStatus(state) {
    el.status.dataset.state = state;
    el.root.dataset.status = state;
    setText(el.statusText, state);
  }

  // ---------------------------------------------------------------- data flow

  async function fetchTop() {
    const headers = version ? { 'If-None-Match': '"' + version + '"' } : {};
    const response = await fetch(endpoint('top'), { headers: headers, cache: 'no-store' });
    if (response.status === 304) return;
    if (response.status === 404) throw new NotFound();
    if (!response.ok) throw new Error('GET top answered ' + response.status);
    render(await response.json());
  }

  function openStream() {
    closeStream();
    clearTimeout(retryTimer);
    const es = new EventSource(withLastEventId(endpoint('stream')));
    source = es;
    streamErrors = 0;
    armOpenTimer(es);
    es.addEventListener('open', function () { onStreamOpen(es); });
    es.addEventListener('snapshot', onStreamEvent);
    es.addEventListener('update', onStreamEvent);
    es.addEventListener('error', function () { onStreamError(es); });
  }

  function closeStream() {
    clearTimeout(openTimer);
    openTimer = 0;
    if (source) source.close();
    source = null;
  }

  function armOpenTimer(es) {
    clearTimeout(openTimer);
    openTimer = setTimeout(function () {
      openTimer = 0;
      if (es === source && es.readyState !== EventSource.OPEN) fallBack();
    }, OPEN_TIMEOUT_MS);
  }

  function onStreamOpen(es) {
    if (es !== source) return;
    streamErrors = 0;
    clearTimeout(openTimer);
    openTimer = 0;
    stopPolling();
    setStatus('live');
  }

  function onStreamEvent(event) {
    if (event.target !== source) return;
    let body;
    try {
      body = JSON.parse(event.data);
    } catch (err) {
      return;  // a malformed frame is dropped; the next one carries the whole state again
    }
    render(body);
  }

  // EventSource reconnects by itself; we give up on it when it keeps failing.
  function onStreamError(es) {
    if (es !== source) return;
    streamErrors += 1;
    const closed = es.readyState === EventSource.CLOSED;
    if (polling || closed || streamErrors >= MAX_STREAM_ERRORS) {
      fallBack();
      return;
    }
    setStatus('reconnecting');
    if (!openTimer) armOpenTimer(es);
  }

  function fallBack() {
    closeStream();
    setStatus('polling');
    if (!polling) {
      polling = true;
      poll();
    }
    clearTimeout(retryTimer);
    retryTimer = setTimeout(openStream, STREAM_RETRY_MS);
  }

  async function poll() {
    clearTimeout(pollTimer);
    try {
      await fetchTop();
    } catch (err) {
      // The server is unreachable or failing: keep the last rendered state and try again.
    }
    if (polling) pollTimer = setTimeout(poll, POLL_MS);
  }

  function stopPolling() {
    polling = false;
    clearTimeout(pollTimer);
    clearTimeout(retryTimer);
  }

  function NotFound() {}

  async function start() {
    setStatus('connecting');
    loadSwitcher();
    try {
      await fetchTop();
    } catch (err) {
      if (err instanceof NotFound) {  // no such board or period: nothing to follow
        setText(el.empty, 'No such board or period.');
        el.empty.hidden = false;
        setStatus('not found');
        return;
      }
      // Otherwise the stream's snapshot renders the board instead.
    }
    openStream();
  }

  window.addEventListener('online', function () {
    if (polling) openStream();
  });

  start();
})();
