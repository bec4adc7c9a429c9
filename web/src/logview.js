// The log viewer: one task's log, or every task of a job merged by arrival.
import { ACTIONS, can, jobPath, request } from './api.js';
import { renderAnsi } from './ansi.js';
import { bytes, el, number, time, toggle } from './dom.js';
import { follow } from './follow.js';
import { Folds } from './folds.js';
import { searchPanel } from './search.js';
import { MergedSource, TaskSource } from './sources.js';
import { Viewport } from './viewport.js';

const MAX_SHOWN_CHARS = 4000; // longer lines show their start and a button for the rest
const SILENT_MS = 60000; // a rank quiet this long while others print is marked
const TERMINAL = ['Completed', 'Failed', 'Terminated', 'Abnormal'];
const prefs = {
  get: (key, fallback) => (localStorage.getItem(`jobtail.${key}`) ?? String(fallback)) === 'true',
  set: (key, value) => localStorage.setItem(`jobtail.${key}`, String(value)),
};

/** Show the log of `task` (or, with task null, every task merged) of job `jobId`. */
export function logPage(root, { projectId, jobId, task, navigate }) {
  const merged = task === null;
  const query = new URLSearchParams(location.search);
  const chosen = merged && query.get('tasks') ? query.get('tasks').split(',') : null;
  const base = `/p/${encodeURIComponent(projectId)}/jobs/${encodeURIComponent(jobId)}`;
  const state = { following: true, userMoved: false, newWhilePaused: 0, ended: null, stream: 'connecting', alive: true };
  const folds = new Folds();
  let foldOn = merged && prefs.get('fold', true);
  let showExpanded = new Set();
  let stopFollow = () => {};
  let pollAbort = null;

  // -- layout ----------------------------------------------------------------------------------
  const crumbs = el('nav', { class: 'crumbs' },
    el('a', { href: `/p/${encodeURIComponent(projectId)}` }, 'Jobs'), ' / ',
    el('a', { href: base, class: 'job-name' }, jobId), ' / ',
    el('span', { class: 'here' }, merged ? 'all tasks' : task));
  const tabs = el('nav', { class: 'tabs' }, // the job's other tasks join once it is known
    merged ? null : el('a', { href: `${base}/logs/${encodeURIComponent(task)}`, class: 'current' }, task),
    el('a', { href: `${base}/logs`, class: merged ? 'current merged-tab' : 'merged-tab' }, 'All tasks'));
  const followButton = el('button', { type: 'button', class: 'follow', title: 'Keep the newest lines in view' }, 'Follow');
  const jumpInput = el('input', { type: 'text', inputmode: 'numeric', class: 'jump', placeholder: merged ? 'row' : 'line', 'aria-label': 'Go to line' });
  const jumpForm = el('form', { class: 'jump-form' }, jumpInput, el('button', { type: 'submit' }, 'Go'));
  const viewportHost = el('div', { class: 'logpane' });
  const status = el('div', { class: 'status' });
  const ranks = el('div', { class: 'ranks', hidden: !merged });
  const errorBox = el('div', { class: 'error', hidden: true });
  const timestampsToggle = toggle('Time', 'Show when each line arrived', prefs.get('timestamps', false), (on) => {
    prefs.set('timestamps', on);
    viewport.box.classList.toggle('show-ts', on);
    viewport.relayout();
  });
  const wrapToggle = toggle('Wrap', 'Wrap long lines', prefs.get('wrap', false), (on) => {
    prefs.set('wrap', on);
    viewport.setWrap(on);
  });
  const foldToggle = merged ? toggle('Fold', 'Show a line printed by several ranks once', foldOn, (on) => {
    foldOn = on;
    prefs.set('fold', on);
    refold();
  }) : null;
  const download = !merged && can(projectId, ACTIONS.logExport)
    ? el('button', { type: 'button', class: 'download', title: 'Download the whole log' }, 'Download') : null;
  const search = merged ? null
    : searchPanel(`${jobPath(projectId, jobId)}/tasks/${encodeURIComponent(task)}/logs/search`, (line) => jumpToLine(line));
  const toolbar = el('div', { class: 'toolbar' }, followButton, jumpForm, search && search.form,
    timestampsToggle, wrapToggle, foldToggle, download);
  root.replaceChildren(el('div', { class: `logpage${merged ? ' merged' : ''}` }, crumbs, tabs, toolbar, ranks, errorBox,
    el('div', { class: 'logmain' }, viewportHost, search && search.results), status));

  const source = merged
    ? new MergedSource({ projectId, jobId, tasks: chosen, onChange: () => changed() })
    : new TaskSource({ projectId, jobId, task, onChange: () => changed() });
  const taskIndex = new Map();
  // A rank's colour: worker-N's N (known before the job's task list is), else its place in the list.
  const rankOf = (name) => {
    const n = /-(\d+)$/.exec(name);
    return n ? Number(n[1]) : taskIndex.get(name) ?? 0;
  };

  // -- rows ------------------------------------------------------------------------------------
  function renderRow(position, node) {
    const row = source.get(position);
    if (!row) {
      node.classList.add('loading');
      node.append(el('span', { class: 'ln' }, merged ? '' : number(source.lineOf(position))), el('span', { class: 'tx' }, '…'));
      return;
    }
    const gutter = merged
      ? el('a', { class: 'ln', href: `${base}/logs/${encodeURIComponent(row.task)}#L${row.line}`, title: `${row.task} line ${row.line}` }, number(row.line))
      : el('a', { class: 'ln', href: `#L${row.line}` }, number(row.line));
    const parts = [gutter, el('span', { class: 'ts' }, time(row.time, true))];
    if (merged) {
      parts.push(el('span', { class: `rank r${rankOf(row.task) % 8}` }, row.task));
      const group = foldOn ? folds.ranksOf(position) : null;
      if (group) {
        const opened = folds.open.has(position);
        parts.push(el('button', { type: 'button', class: 'fold', dataset: { fold: String(position) }, 'aria-expanded': String(opened) },
          `× ${group.length} ranks`));
      }
      if (foldOn && folds.hiddenBy.has(position)) node.classList.add('member');
    }
    const text = el('span', { class: 'tx' });
    const long = row.text.length > MAX_SHOWN_CHARS && !showExpanded.has(position);
    renderAnsi(text, long ? row.text.slice(0, MAX_SHOWN_CHARS) : row.text);
    if (long) { // before the text, where it is seen without scrolling sideways
      parts.push(el('button', { type: 'button', class: 'more', dataset: { more: String(position) },
        title: `Only the first ${number(MAX_SHOWN_CHARS)} characters are shown` }, `+${number(row.text.length - MAX_SHOWN_CHARS)} more characters`));
    }
    parts.push(text);
    node.append(...parts);
  }

  const viewport = new Viewport(viewportHost, {
    renderRow,
    rowKey: (position) => {
      const row = source.get(position);
      return row ? `${row.v}:${foldOn ? folds.key(position) : ''}:${showExpanded.has(position)}` : 'loading';
    },
    isHidden: (position) => foldOn && folds.isHidden(position),
    onRange: (first, last) => {
      source.ensure(first, last);
      if (merged && foldOn && folds.stale(first, last)) refold();
      if (state.userMoved) {
        state.userMoved = false;
        setFollowing(viewport.atBottom());
      }
      showStatus();
    },
    onUserScroll: () => {
      // Any move by the user pauses following at once (before data arriving meanwhile could pull
      // the window back to the end); reaching the end again resumes it, after the next layout.
      state.userMoved = true;
      if (state.following) {
        state.following = false;
        state.newWhilePaused = 0;
      }
    },
  });
  viewport.box.classList.toggle('show-ts', prefs.get('timestamps', false));
  viewport.setWrap(prefs.get('wrap', false));

  viewportHost.addEventListener('click', (e) => {
    const fold = e.target.closest('button.fold');
    if (fold) {
      folds.toggle(Number(fold.dataset.fold));
      if (state.following) viewport.scrollToEnd(); // opened rows push the end down: keep it in view
      viewport.refresh();
      return;
    }
    const more = e.target.closest('button.more');
    if (more) {
      showExpanded = new Set([...showExpanded, Number(more.dataset.more)]);
      viewport.relayout();
      return;
    }
    const link = e.target.closest('a.ln');
    if (link && !merged && !e.ctrlKey && !e.metaKey && !e.shiftKey) {
      e.preventDefault();
      const line = Number(link.getAttribute('href').slice(2));
      history.replaceState(history.state, '', `#L${line}`);
      viewport.highlight(source.positionOf(line));
      setFollowing(false);
    }
  });

  function refold() {
    if (merged && foldOn) folds.compute(source.rows, viewport.first, Math.max(viewport.last, viewport.first + viewport.visibleRows));
    viewport.refresh();
  }

  let changeQueued = false;
  function changed() {
    if (changeQueued) return;
    changeQueued = true;
    requestAnimationFrame(() => {
      changeQueued = false;
      if (!state.alive) return;
      if (merged) refold();
      viewport.setCount(source.count);
      const widest = merged ? Math.max(1, ...(source.logs || []).map((l) => Number(l.last_line))) : source.lineOf(source.count - 1);
      viewport.box.style.setProperty('--ln', `${Math.max(6, number(widest).length + 2)}ch`);
      if (state.following) viewport.scrollToEnd();
      if (source.error) showError(source.error);
      else errorBox.hidden = true;
      if (merged) showRanks();
      showStatus();
    });
  }

  // -- following -------------------------------------------------------------------------------
  function setFollowing(on) {
    if (on === state.following) return;
    state.following = on;
    if (on) {
      state.newWhilePaused = 0;
      viewport.scrollToEnd();
    }
    showStatus();
  }
  followButton.addEventListener('click', () => setFollowing(true));

  function growBy(lines) {
    if (!state.following) state.newWhilePaused += lines;
  }

  function startTaskFollow(fullSize, knownLines) {
    // The stream starts one byte early, at the log's last byte: then the first event says
    // whether the log ended with a newline, which the count of lines needs.
    let newlines = null; // newlines before the stream's position
    let lines = knownLines;
    stopFollow = follow(`${jobPath(projectId, jobId)}/tasks/${encodeURIComponent(task)}/logs/stream`, Math.max(0, fullSize - 1), {
      onLog: (event) => {
        newlines = newlines === null && fullSize > 0 ? knownLines - 1 + event.newlines : (newlines || 0) + event.newlines;
        if (event.end <= fullSize) return; // only the byte re-read: nothing new
        const total = newlines + (event.last === '\n' ? 0 : 1);
        if (total > lines) growBy(total - lines);
        lines = Math.max(lines, total);
        source.grow(lines);
        changed();
      },
      onEnd: (reason) => {
        state.ended = reason;
        showStatus();
      },
      onState: (s) => {
        state.stream = s;
        showStatus();
      },
    });
  }

  async function startMergedFollow() {
    pollAbort = new AbortController();
    let failures = 0;
    while (state.alive) {
      try {
        const before = source.count;
        const came = await source.poll(pollAbort.signal);
        failures = 0;
        state.stream = 'live';
        if (came) growBy(source.count - before);
        changed();
        if (!came && TERMINAL.includes(source.phase)) {
          state.ended = `job ${source.phase.toLowerCase()}`;
          showStatus();
          return;
        }
      } catch (error) {
        if (!state.alive) return;
        failures += 1;
        state.stream = 'reconnecting';
        showStatus();
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 500 * failures)));
      }
    }
  }

  // -- ranks (merged) ----------------------------------------------------------------------------
  function showRanks() {
    const logs = source.logs || [];
    const known = new Map(logs.map((log) => [log.task, log]));
    const newest = Math.max(0, ...logs.map((l) => l.last_time || 0));
    const names = allTasks.length ? allTasks : logs.map((log) => log.task);
    const chips = names.map((name) => known.get(name) || { task: name, hidden: true }).map((log) => {
      const index = rankOf(log.task);
      const quiet = log.last_time ? newest - log.last_time : Infinity;
      const silent = !log.hidden && logs.length > 1 && quiet >= SILENT_MS;
      const on = !chosen || chosen.includes(log.task);
      return el('button', {
        type: 'button', class: `chip r${index % 8}${silent ? ' silent' : ''}`, 'aria-pressed': String(on),
        dataset: { task: log.task },
        title: silent ? `No output for ${Math.round(quiet / 1000)} s while other ranks printed` : 'Show or hide this rank',
      }, log.task, silent ? el('span', { class: 'quiet' }, log.last_time ? ` silent ${Math.round(quiet / 60000)}m` : ' no output') : null);
    });
    ranks.replaceChildren(el('span', { class: 'label' }, 'Ranks'), ...chips);
  }

  ranks.addEventListener('click', (e) => {
    const chip = e.target.closest('button.chip');
    if (!chip) return;
    const all = allTasks.length ? allTasks : (source.logs || []).map((l) => l.task);
    const current = chosen || all;
    const next = current.includes(chip.dataset.task) ? current.filter((t) => t !== chip.dataset.task) : [...current, chip.dataset.task];
    if (!next.length) return;
    const ordered = all.filter((t) => next.includes(t));
    navigate(`${base}/logs${ordered.length === all.length ? '' : `?tasks=${ordered.join(',')}`}`);
  });

  // -- jumping and permalinks --------------------------------------------------------------------
  function jumpToLine(line) {
    const position = merged ? line - 1 : source.positionOf(line);
    const clamped = Math.min(Math.max(0, position), Math.max(0, source.count - 1));
    setFollowing(false);
    viewport.jumpTo(clamped, 'center');
    viewport.highlight(clamped);
    if (!merged) history.replaceState(history.state, '', `#L${source.lineOf(clamped)}`);
  }

  jumpForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const line = Number(jumpInput.value.replaceAll(',', '').trim());
    if (Number.isInteger(line) && line > 0) jumpToLine(line);
  });

  // -- download ----------------------------------------------------------------------------------
  if (download) {
    download.addEventListener('click', async () => {
      try {
        const answer = await request('GET', `${jobPath(projectId, jobId)}/tasks/${encodeURIComponent(task)}/logs/url`,
          { query: { 'Content-Type': 'application/octet-stream' } });
        const link = el('a', { href: answer.obs_url, download: `${jobId}-${task}.log`, hidden: true });
        document.body.append(link);
        link.click();
        link.remove();
      } catch (error) {
        showError(error);
      }
    });
  }

  // -- status ----------------------------------------------------------------------------------
  function showError(error) {
    errorBox.hidden = false;
    errorBox.textContent = error.message;
  }

  let statusQueued = false;
  const showStatus = () => {
    if (statusQueued) return;
    statusQueued = true;
    requestAnimationFrame(() => {
      statusQueued = false;
      if (state.alive) drawStatus();
    });
  };

  function drawStatus() {
    const parts = [];
    const total = source.count;
    if (total) {
      const first = merged ? viewport.first + 1 : source.lineOf(viewport.first);
      const lastShown = viewport.atBottom() ? total - 1 : Math.min(total - 1, viewport.last);
      const last = merged ? lastShown + 1 : source.lineOf(lastShown);
      parts.push(el('span', { class: 'range' }, `${merged ? 'Rows' : 'Lines'} ${number(first)}–${number(last)} of ${number(merged ? total : source.lineOf(total - 1))}`));
      const size = merged ? (source.logs || []).reduce((sum, l) => sum + l.full_size, 0) : source.fullSize;
      if (size) parts.push(el('span', { class: 'size' }, bytes(size)));
    } else {
      parts.push(el('span', { class: 'range' }, 'No output yet'));
    }
    let mode;
    if (state.ended && (state.following || viewport.atBottom())) mode = el('span', { class: 'mode ended' }, `Log complete: ${state.ended}`);
    else if (state.stream === 'reconnecting') mode = el('span', { class: 'mode reconnecting' }, 'Connection lost — reconnecting…');
    else if (state.following) mode = el('span', { class: 'mode live' }, state.ended ? 'At the end' : 'Following');
    else {
      const fresh = state.newWhilePaused;
      mode = el('button', { type: 'button', class: 'mode paused' }, state.ended ? 'Go to the end'
        : `Following paused — ${fresh ? `${number(fresh)} new line${fresh === 1 ? '' : 's'}` : 'no new lines yet'} · resume`);
      mode.addEventListener('click', () => setFollowing(true));
    }
    parts.push(mode);
    status.replaceChildren(...parts);
    followButton.classList.toggle('on', state.following);
  }

  // -- start -------------------------------------------------------------------------------------
  let allTasks = [];
  const describe = () => request('GET', jobPath(projectId, jobId)).then((job) => {
    crumbs.querySelector('.job-name').textContent = job.metadata.name;
    allTasks = job.status.tasks || [];
    allTasks.forEach((t, i) => taskIndex.set(t, i));
    tabs.replaceChildren(...allTasks.map((t) => el('a', { href: `${base}/logs/${encodeURIComponent(t)}`, class: t === task ? 'current' : '' }, t)),
      el('a', { href: `${base}/logs`, class: merged ? 'current merged-tab' : 'merged-tab' }, 'All tasks'));
    document.title = `${merged ? 'all tasks' : task} · ${job.metadata.name} · jobtail`;
    if (merged) showRanks();
    viewport.refresh();
  }).catch(showError);

  (async () => {
    try {
      const opened = await source.open(); // the log first: the job's name and tasks can wait
      describe();
      if (!state.alive) return;
      viewport.setCount(source.count);
      const permalink = /^#L(\d+)$/.exec(location.hash);
      if (permalink && !merged) jumpToLine(Number(permalink[1]));
      else viewport.scrollToEnd();
      changed();
      if (merged) startMergedFollow();
      else startTaskFollow(opened.empty ? 0 : source.fullSize, source.count ? source.lineOf(source.count - 1) : 0);
    } catch (error) {
      describe();
      showError(error);
    }
  })();

  return () => {
    state.alive = false;
    stopFollow();
    if (pollAbort) pollAbort.abort();
    viewport.destroy();
  };
}
