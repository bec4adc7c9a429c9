// The jobs of a project: newest first, phase filter, name search, paging; phases update live;
// stop and delete where the role allows.
import { ACTIONS, can, jobPath, request } from './api.js';
import { debounce, duration, el, number, time } from './dom.js';

const PAGE_SIZE = 20;
const REFRESH_MS = 3000;
export const PHASES = ['Creating', 'Pending', 'Running', 'Terminating', 'Completed', 'Failed', 'Terminated', 'Abnormal'];
const STOPPABLE = ['Creating', 'Pending', 'Running'];

export function phaseBadge(phase) {
  return el('span', { class: `phase phase-${phase.toLowerCase()}` }, phase);
}

/** A button that asks once more before it acts ("Delete" → "Delete? click again"). */
export function confirmButton(label, className, act) {
  const button = el('button', { type: 'button', class: className }, label);
  let armed = null;
  button.addEventListener('click', async (e) => {
    e.stopPropagation();
    if (!armed) {
      button.textContent = `${label}? Click again`;
      button.classList.add('armed');
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.classList.remove('armed');
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    try {
      await act();
    } finally {
      button.disabled = false;
      button.textContent = label;
      button.classList.remove('armed');
    }
  });
  return button;
}

export async function stopJob(projectId, jobId) {
  return request('POST', `${jobPath(projectId, jobId)}/actions`, { body: { action_type: 'terminate' } });
}

export async function deleteJob(projectId, jobId) {
  return request('DELETE', jobPath(projectId, jobId));
}

export function jobsPage(root, { projectId, navigate }) {
  const query = new URLSearchParams(location.search);
  const filter = { phase: query.get('phase') || '', name: query.get('name') || '', page: Number(query.get('page') || 0) };
  const mayStop = can(projectId, ACTIONS.update);
  const mayDelete = can(projectId, ACTIONS.remove);
  const phase = el('select', { class: 'phase-filter', 'aria-label': 'Phase' },
    el('option', { value: '' }, 'All phases'), PHASES.map((p) => el('option', { value: p, selected: p === filter.phase }, p)));
  const name = el('input', { type: 'search', class: 'name-filter', placeholder: 'Search by name', value: filter.name, 'aria-label': 'Name' });
  const body = el('tbody');
  const pager = el('div', { class: 'pager' });
  const error = el('p', { class: 'error', hidden: true });
  root.replaceChildren(el('div', { class: 'jobs' },
    el('div', { class: 'toolbar' }, el('h1', {}, 'Jobs'), phase, name),
    error,
    el('table', { class: 'jobs-table' },
      el('thead', {}, el('tr', {}, ['Name', 'Phase', 'Created', 'Duration', 'Tasks', ''].map((h) => el('th', {}, h)))),
      body),
    pager));

  let alive = true;
  let timer = null;

  function remember() {
    const params = new URLSearchParams();
    if (filter.phase) params.set('phase', filter.phase);
    if (filter.name) params.set('name', filter.name);
    if (filter.page) params.set('page', String(filter.page));
    const search = params.toString();
    history.replaceState(history.state, '', `${location.pathname}${search ? `?${search}` : ''}`);
  }

  function row(job) {
    const id = job.metadata.id;
    const link = `/p/${encodeURIComponent(projectId)}/jobs/${encodeURIComponent(id)}`;
    const actions = el('td', { class: 'actions' });
    if (mayStop && STOPPABLE.includes(job.status.phase)) {
      actions.append(confirmButton('Stop', 'stop', async () => {
        await stopJob(projectId, id);
        load();
      }));
    }
    if (mayDelete) {
      actions.append(confirmButton('Delete', 'delete danger', async () => {
        await deleteJob(projectId, id);
        load();
      }));
    }
    return el('tr', { dataset: { job: id } },
      el('td', {}, el('a', { href: link, class: 'job-link' }, job.metadata.name)),
      el('td', {}, phaseBadge(job.status.phase)),
      el('td', {}, time(job.metadata.create_time)),
      el('td', {}, job.status.start_time ? duration(job.status.duration) : ''),
      el('td', {}, number(job.spec.resource.node_count)),
      actions);
  }

  async function load() {
    clearTimeout(timer);
    const filters = [];
    if (filter.phase) filters.push({ key: 'phase', operator: 'in', value: [filter.phase] });
    if (filter.name) filters.push({ key: 'name', operator: 'like', value: [filter.name] });
    try {
      const answer = await request('POST', `/v2/${encodeURIComponent(projectId)}/training-job-searches`, {
        body: { limit: PAGE_SIZE, offset: filter.page, sort_by: 'create_time', order: 'desc', filters },
      });
      if (!alive) return;
      error.hidden = true;
      body.replaceChildren(...(answer.items.length ? answer.items.map(row)
        : [el('tr', {}, el('td', { colspan: 6, class: 'empty' }, filter.phase || filter.name ? 'No job matches.' : 'No jobs yet.'))]));
      const pages = Math.max(1, Math.ceil(answer.total / PAGE_SIZE));
      const prev = el('button', { type: 'button', class: 'prev', disabled: filter.page === 0 }, '← Newer');
      const next = el('button', { type: 'button', class: 'next', disabled: filter.page + 1 >= pages }, 'Older →');
      prev.addEventListener('click', () => { filter.page -= 1; remember(); load(); });
      next.addEventListener('click', () => { filter.page += 1; remember(); load(); });
      pager.replaceChildren(prev, el('span', {}, `Page ${filter.page + 1} of ${pages} · ${number(answer.total)} jobs`), next);
    } catch (e) {
      if (!alive) return;
      error.textContent = e.message;
      error.hidden = false;
    }
    if (alive) timer = setTimeout(load, REFRESH_MS);
  }

  phase.addEventListener('change', () => { filter.phase = phase.value; filter.page = 0; remember(); load(); });
  name.addEventListener('input', debounce(() => { filter.name = name.value.trim(); filter.page = 0; remember(); load(); }, 250));
  load();
  return () => {
    alive = false;
    clearTimeout(timer);
  };
}
