// One job: command, phases, each task with its exit code and message, its attempts (a job restarted
// by its fault-tolerance annotations: each attempt's end, the task that failed first, and links to
// where the attempt begins in each task log), events, duration, and links to each task's log and to
// all of them merged.
import { ACTIONS, can, jobPath, request } from './api.js';
import { duration, el, time } from './dom.js';
import { confirmButton, deleteJob, phaseBadge, stopJob } from './jobs.js';

const REFRESH_MS = 3000;
const TERMINAL = ['Completed', 'Failed', 'Terminated', 'Abnormal'];

function field(label, value) {
  return [el('dt', {}, label), el('dd', {}, value)];
}

export function jobPage(root, { projectId, jobId, navigate }) {
  const base = `/p/${encodeURIComponent(projectId)}/jobs/${encodeURIComponent(jobId)}`;
  const head = el('div', { class: 'job-head' });
  const facts = el('dl', { class: 'facts' });
  const tasks = el('tbody');
  const events = el('tbody');
  const attempts = el('tbody');
  const attemptsSection = el('section', { class: 'attempts', hidden: true },
    el('h2', {}, 'Attempts'),
    el('table', { class: 'attempts-table' }, el('thead', {}, el('tr', {}, ['#', 'Started', 'Ended', 'How it ended', 'Logs'].map((h) => el('th', {}, h)))), attempts));
  const error = el('p', { class: 'error', hidden: true });
  root.replaceChildren(el('div', { class: 'job' },
    el('nav', { class: 'crumbs' }, el('a', { href: `/p/${encodeURIComponent(projectId)}` }, 'Jobs'), ' / ', el('span', { class: 'here' }, jobId)),
    head, error, facts,
    el('h2', {}, 'Tasks'),
    el('table', { class: 'tasks-table' }, el('thead', {}, el('tr', {}, ['Task', 'Exit code', 'Message', 'Log'].map((h) => el('th', {}, h)))), tasks),
    attemptsSection,
    el('h2', {}, 'Events'),
    el('table', { class: 'events-table' }, el('thead', {}, el('tr', {}, ['Time', 'Level', 'Message'].map((h) => el('th', {}, h)))), events)));

  let alive = true;
  let timer = null;

  function show(job, taskList, eventList) {
    const phase = job.status.phase;
    document.title = `${job.metadata.name} · jobtail`;
    root.querySelector('.crumbs .here').textContent = job.metadata.name;
    const actions = el('div', { class: 'actions' });
    if (can(projectId, ACTIONS.update) && ['Creating', 'Pending', 'Running'].includes(phase)) {
      actions.append(confirmButton('Stop', 'stop', async () => {
        await stopJob(projectId, jobId);
        load();
      }));
    }
    if (can(projectId, ACTIONS.remove)) {
      actions.append(confirmButton('Delete', 'delete danger', async () => {
        await deleteJob(projectId, jobId);
        navigate(`/p/${encodeURIComponent(projectId)}`);
      }));
    }
    head.replaceChildren(el('h1', {}, job.metadata.name), phaseBadge(phase),
      el('a', { href: `${base}/logs`, class: 'button merged-link' }, 'All task logs, merged'), actions);
    const command = job.algorithm && job.algorithm.command;
    facts.replaceChildren(
      ...field('Job ID', el('code', {}, jobId)),
      ...field('Command', command ? el('pre', { class: 'command' }, command) : '—'),
      ...field('Created', time(job.metadata.create_time)),
      ...field('Started', job.status.start_time ? time(job.status.start_time) : '—'),
      ...field('Duration', job.status.start_time ? duration(job.status.duration) : '—'),
      ...field('Tasks', String(job.spec.resource.node_count)));
    const statuses = new Map((job.status.task_statuses || []).map((t) => [t.task, t]));
    tasks.replaceChildren(...taskList.map((t) => {
      const s = statuses.get(t.task) || {};
      return el('tr', { dataset: { task: t.task } },
        el('td', {}, t.task),
        el('td', { class: `exit${s.exit_code ? ' bad' : ''}` }, s.exit_code === undefined || s.exit_code === null ? '' : String(s.exit_code)),
        el('td', {}, s.message || ''),
        el('td', {}, el('a', { href: `${base}/logs/${encodeURIComponent(t.task)}`, class: 'log-link' }, 'log')));
    }));
    const records = job.status.running_records || [];
    attemptsSection.hidden = records.length < 2 && !(records[0] && records[0].end_related_task);
    attempts.replaceChildren(...records.map((r, i) => {
      const how = [r.end_reason, r.end_related_task ? `(${r.end_related_task} failed first)` : '', r.end_recover ? '— restarted' : ''].filter(Boolean).join(' ');
      const links = Object.entries(r.log_starts || {}).map(([task, at]) =>
        el('a', { href: `${base}/logs/${encodeURIComponent(task)}#L${at.line}`, class: 'attempt-link' }, task));
      return el('tr', { dataset: { attempt: String(i + 1) } },
        el('td', {}, String(i + 1)),
        el('td', {}, time(r.start_at * 1000)),
        el('td', {}, r.end_at ? time(r.end_at * 1000) : 'running'),
        el('td', { class: r.end_related_task ? 'bad' : '' }, how),
        el('td', { class: 'attempt-links' }, ...links.flatMap((a, k) => (k ? [' ', a] : [a]))));
    }));
    events.replaceChildren(...eventList.map((e) => el('tr', { class: `level-${e.level.toLowerCase()}` },
      el('td', {}, time(Date.parse(e.time))), el('td', {}, e.level), el('td', {}, e.message))));
    return phase;
  }

  async function load() {
    clearTimeout(timer);
    let phase = '';
    try {
      const [job, taskList, eventList] = await Promise.all([
        request('GET', jobPath(projectId, jobId)),
        request('GET', `${jobPath(projectId, jobId)}/tasks`),
        request('GET', `${jobPath(projectId, jobId)}/events`, { query: { limit: 100 } }),
      ]);
      if (!alive) return;
      error.hidden = true;
      phase = show(job, taskList, eventList.events);
    } catch (e) {
      if (!alive) return;
      error.textContent = e.message;
      error.hidden = false;
    }
    if (alive && !TERMINAL.includes(phase)) timer = setTimeout(load, REFRESH_MS);
  }

  load();
  return () => {
    alive = false;
    clearTimeout(timer);
  };
}
