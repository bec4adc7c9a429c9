// Where the rows of a log view come from: windows of a task log (line pages) or of a job's merged
// logs (merged-logs pages), fetched in blocks around what is on screen and kept in a bounded
// cache, so memory stays flat however far one scrolls.
import { jobPath, request } from './api.js';

export const BLOCK = 200; // rows per request
const KEEP_BLOCKS = 40; // blocks kept in memory: 8,000 rows
const PARALLEL = 3;
const RETRY_MS = 1000; // after a failed fetch (a 429 from the rate limit, a restarting server)

let serial = 0;

/** The common part: rows by position (0 … count-1), fetched a block at a time. */
class BlockSource {
  constructor(onChange) {
    this.onChange = onChange;
    this.rows = new Map(); // position -> row
    this.loaded = new Map(); // block -> generation it was fetched at (insertion order: least recent first)
    this.inFlight = new Set();
    this.generation = 0;
    this.stale = new Map(); // block -> generation from which it must be fetched again
    this.count = 0;
    this.wanted = [];
    this.onScreen = new Set();
    this.error = null;
  }

  get(position) {
    return this.rows.get(position);
  }

  put(position, row) {
    const old = this.rows.get(position);
    if (old && old.text === row.text && old.line === row.line && old.task === row.task && old.time === row.time) return;
    row.v = ++serial; // a new version: the row is drawn again
    this.rows.set(position, row);
  }

  /** Rows `from` … `to` will be shown: fetch the blocks they need (and one each side). */
  ensure(from, to) {
    const first = Math.max(0, Math.floor(from / BLOCK) - 1);
    const last = Math.min(Math.floor(Math.max(0, this.count - 1) / BLOCK), Math.floor(to / BLOCK) + 1);
    const onScreen = [];
    for (let b = Math.floor(from / BLOCK); b <= Math.min(last, Math.floor(to / BLOCK)); b += 1) onScreen.push(b);
    const margin = [];
    for (let b = first; b <= last; b += 1) if (!onScreen.includes(b)) margin.push(b);
    this.onScreen = new Set(onScreen);
    this.wanted = [...onScreen, ...margin].filter((b) => b * BLOCK < this.count && this.needs(b));
    this.pump();
  }

  needs(block) {
    if (this.inFlight.has(block)) return false;
    if (!this.loaded.has(block)) return true;
    return this.stale.has(block) && this.loaded.get(block) < this.stale.get(block);
  }

  pump() {
    while (this.inFlight.size < PARALLEL && this.wanted.length) {
      const block = this.wanted[0];
      const screenBusy = [...this.inFlight].some((b) => this.onScreen.has(b));
      if (!this.onScreen.has(block) && screenBusy) return; // what is on screen first, alone
      this.wanted.shift();
      if (!this.needs(block)) continue;
      this.inFlight.add(block);
      const generation = this.generation;
      this.fetchBlock(block)
        .then(() => {
          this.loaded.delete(block);
          this.loaded.set(block, generation);
          this.error = null;
          this.evict();
        })
        .catch((error) => {
          this.error = error; // shown; the block is asked for again once the window is drawn again
          setTimeout(() => this.onChange(), RETRY_MS);
        })
        .finally(() => {
          this.inFlight.delete(block);
          this.onChange();
          this.pump();
        });
    }
  }

  evict() {
    while (this.loaded.size > KEEP_BLOCKS) {
      const [oldest] = this.loaded.keys();
      this.loaded.delete(oldest);
      for (let p = oldest * BLOCK; p < (oldest + 1) * BLOCK; p += 1) this.rows.delete(p);
    }
  }

  /** Rows from `position` on changed (the log grew): fetch their blocks again when shown. */
  invalidateFrom(position) {
    this.generation += 1;
    const lastBlock = Math.floor(Math.max(0, this.count - 1) / BLOCK);
    for (let b = Math.floor(Math.max(0, position) / BLOCK); b <= lastBlock; b += 1) this.stale.set(b, this.generation);
  }

  /** The blocks whose rows (up to the end) are all among rows [from, to) are loaded. */
  markLoaded(from, to) {
    for (let b = Math.ceil(from / BLOCK); b * BLOCK < to && Math.min((b + 1) * BLOCK, this.count) <= to; b += 1) {
      this.loaded.delete(b);
      this.loaded.set(b, this.generation);
    }
  }
}

/** One task's log through line pages; positions are line numbers minus the first line. */
export class TaskSource extends BlockSource {
  constructor({ projectId, jobId, task, onChange }) {
    super(onChange);
    this.path = `${jobPath(projectId, jobId)}/logs/${encodeURIComponent(task)}`;
    this.firstLine = 1;
    this.fullSize = 0;
  }

  lineOf(position) {
    return this.firstLine + position;
  }

  positionOf(line) {
    return line - this.firstLine;
  }

  page(query) {
    return request('GET', this.path, { query: { timestamps: 'true', collapse_cr: 'true', ...query } });
  }

  store(answer) {
    const texts = answer.lines ? answer.content.split('\n') : [];
    const numbers = texts.map((_, i) => Number(answer.start_line) + (Number(answer.end_line) >= Number(answer.start_line) ? i : -i));
    texts.forEach((stamped, i) => {
      const cut = stamped.indexOf(' ');
      this.put(this.positionOf(numbers[i]), {
        line: numbers[i], time: Date.parse(stamped.slice(0, cut)), text: stamped.slice(cut + 1),
      });
    });
    return numbers;
  }

  /** Learn the log's extent and load its newest lines. Lines are numbered from 1 until the
   * first retained line is known (it is 1 unless retention dropped the log's oldest segments). */
  async open() {
    let newest;
    try {
      newest = await this.page({ lines: BLOCK });
    } catch (error) {
      if (error.code === 'ModelArts.2818') return { empty: true }; // nothing written yet
      throw error;
    }
    this.fullSize = newest.full_size;
    this.take(newest);
    this.page({ order: 'asc', lines: 1 }).then((oldest) => {
      const first = oldest.lines ? Number(oldest.start_line) : 1;
      if (first === this.firstLine) return;
      this.firstLine = first; // positions move: start again from what the newest page said
      this.rows.clear();
      this.loaded.clear();
      this.count = 0;
      this.take(newest);
      this.onChange();
    }).catch(() => {});
    return { empty: this.count === 0 };
  }

  take(newest) {
    const last = newest.lines ? Number(newest.start_line) : this.firstLine - 1;
    this.count = Math.max(this.count, last - this.firstLine + 1);
    const numbers = this.store(newest);
    if (numbers.length) this.markLoaded(this.positionOf(Math.min(...numbers)), this.count);
  }

  async fetchBlock(block) {
    const first = this.lineOf(block * BLOCK);
    this.store(await this.page({ order: 'asc', base_line: first - 1, lines: BLOCK }));
  }

  /** The log now has `lines` lines (the last maybe still growing). */
  grow(lines) {
    const count = lines - this.firstLine + 1;
    const before = this.count;
    this.count = Math.max(this.count, count);
    this.invalidateFrom(before - 1);
  }
}

/** A job's tasks merged by arrival; positions are positions in the merged order. */
export class MergedSource extends BlockSource {
  constructor({ projectId, jobId, tasks, onChange }) {
    super(onChange);
    this.path = `${jobPath(projectId, jobId)}/merged-logs`;
    this.tasks = tasks; // null: every task
    this.end = null; // the cursor after the newest line known
    this.logs = [];
    this.phase = '';
  }

  page(query) {
    return request('GET', this.path, {
      query: { collapse_cr: 'true', tasks: this.tasks ? this.tasks.join(',') : undefined, ...query },
    });
  }

  store(answer) {
    answer.lines.forEach((line, i) => {
      this.put(answer.position + i, { task: line.task, line: Number(line.line), time: line.time, text: line.content });
    });
    this.logs = answer.logs;
    this.phase = answer.phase;
    this.count = Math.max(this.count, answer.total);
  }

  async open() {
    const newest = await this.page({ lines: BLOCK });
    this.end = newest.end;
    this.count = newest.total;
    this.store(newest);
    this.markLoaded(newest.position, newest.total);
    return { empty: newest.total === 0 };
  }

  async fetchBlock(block) {
    this.store(await this.page({ at: block * BLOCK, lines: BLOCK }));
  }

  /** Wait (long poll) for lines after the newest known; resolves with how many came. */
  async poll(signal) {
    const answer = await request('GET', this.path, {
      query: {
        collapse_cr: 'true', tasks: this.tasks ? this.tasks.join(',') : undefined, after: this.end, lines: 500, wait: 20,
      },
      signal,
    });
    this.store(answer);
    this.end = answer.end;
    this.markLoaded(answer.position, answer.position + answer.lines.length);
    return answer.lines.length;
  }
}
