// Search of a task's whole log through the search API: a form for the toolbar and a list of
// matches beside the log, each with its line number; next and previous jump to each match's line.
import { request } from './api.js';
import { plain } from './ansi.js';
import { el, number, toggle } from './dom.js';

/** The search form and result list for the log at `path` (…/logs/search); `jumpToLine(n)` shows line n. */
export function searchPanel(path, jumpToLine) {
  const searchInput = el('input', { type: 'search', class: 'search', placeholder: 'Search the whole log', 'aria-label': 'Search' });
  const regexToggle = toggle('.*', 'Regular expression', false, () => {});
  const caseToggle = toggle('Aa', 'Ignore case', false, () => {});
  const searchForm = el('form', { class: 'search-form' }, searchInput, regexToggle, caseToggle, el('button', { type: 'submit' }, 'Search'));
  const results = el('aside', { class: 'results', hidden: true });
  const search = { query: null, matches: [], index: -1, next: null, complete: true, busy: false };

  async function runSearch(continuing) {
    if (search.busy) return;
    search.busy = true;
    try {
      const answer = await request('GET', path, {
        query: {
          q: search.query.q, regex: search.query.regex, ignore_case: search.query.ignoreCase, limit: 200, context: 1,
          after_line: continuing ? search.next : undefined,
        },
      });
      const brief = (lines) => lines.map((l) => ({ line: Number(l.line), content: l.content }));
      search.matches.push(...answer.matches.map((m) => ({
        line: Number(m.line), content: m.content, before: brief(m.before), after: brief(m.after),
      })));
      search.next = answer.next_after_line;
      search.complete = answer.complete;
      search.error = null;
    } catch (error) {
      search.error = error.message;
    } finally {
      search.busy = false;
    }
    showResults();
  }

  function snippet(content, q) {
    const segments = content.split('\r').filter((s) => s.length);
    const text = plain(segments.length ? segments[segments.length - 1] : content);
    const shown = text.length > 300 ? `${text.slice(0, 300)}…` : text;
    const at = search.query.regex || !q ? -1 : (search.query.ignoreCase ? shown.toLowerCase().indexOf(q.toLowerCase()) : shown.indexOf(q));
    if (at < 0) return [shown];
    return [shown.slice(0, at), el('mark', {}, shown.slice(at, at + q.length)), shown.slice(at + q.length)];
  }

  function showResults() {
    results.hidden = false;
    const head = el('div', { class: 'results-head' },
      el('span', { class: 'count' }, search.error ? 'Search failed' : `${number(search.matches.length)} match${search.matches.length === 1 ? '' : 'es'}${search.index >= 0 ? ` · ${search.index + 1} of ${number(search.matches.length)}` : ''}`),
      el('button', { type: 'button', class: 'prev', title: 'Previous match (Shift+Enter)' }, '↑'),
      el('button', { type: 'button', class: 'next', title: 'Next match (Enter)' }, '↓'),
      el('button', { type: 'button', class: 'close', title: 'Close' }, '×'));
    const around = (lines) => lines.map((l) => el('div', { class: 'mcontext' },
      el('span', { class: 'mline' }, number(l.line)), el('span', { class: 'mtext' }, snippet(l.content, ''))));
    const list = el('ol', { class: 'matches' }, search.matches.map((m, i) => el('li', {
      class: i === search.index ? 'current' : '', dataset: { index: String(i) },
    }, i === search.index ? around(m.before) : null, // the current match shows a line of context each side
    el('div', { class: 'mhit' }, el('span', { class: 'mline' }, number(m.line)), el('span', { class: 'mtext' }, snippet(m.content, search.query.q))),
    i === search.index ? around(m.after) : null)));
    const foot = search.error ? el('p', { class: 'search-error' }, search.error)
      : search.complete ? el('p', { class: 'done' }, search.busy ? 'Searching…' : 'Searched the whole log.')
        : el('p', { class: 'partial' }, `Searched up to line ${number(search.next)} — `,
          el('button', { type: 'button', class: 'continue' }, 'continue'));
    results.replaceChildren(head, list, foot);
    const current = list.querySelector('li.current');
    if (current) current.scrollIntoView({ block: 'nearest' });
  }

  async function goTo(index) {
    if (index >= search.matches.length && !search.complete) {
      await runSearch(true);
    }
    if (!search.matches.length) return;
    search.index = Math.max(0, Math.min(index, search.matches.length - 1));
    jumpToLine(search.matches[search.index].line);
    showResults();
  }

  searchForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = searchInput.value;
    if (!q) return;
    const wanted = { q, regex: regexToggle.getAttribute('aria-pressed') === 'true', ignoreCase: caseToggle.getAttribute('aria-pressed') === 'true' };
    if (search.query && JSON.stringify(search.query) === JSON.stringify(wanted) && search.matches.length) {
      await goTo(search.index + 1);
      return;
    }
    Object.assign(search, { query: wanted, matches: [], index: -1, next: null, complete: true });
    showResults();
    await runSearch(false);
    if (search.matches.length) await goTo(0);
  });
  searchInput.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.shiftKey && search.matches.length) {
      e.preventDefault();
      goTo(search.index - 1);
    }
  });
  results.addEventListener('click', (e) => {
    if (e.target.closest('button.next')) goTo(search.index + 1);
    else if (e.target.closest('button.prev')) goTo(search.index - 1);
    else if (e.target.closest('button.close')) results.hidden = true;
    else if (e.target.closest('button.continue')) runSearch(true);
    else {
      const item = e.target.closest('li[data-index]');
      if (item) goTo(Number(item.dataset.index));
    }
  });

  return { form: searchForm, results };
}
