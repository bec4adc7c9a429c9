// Folding in the merged view: a line that several ranks print identically at about the same time
// (within FOLD_MS of the first, before another line repeats too far away) shows once, as
// "× N ranks", and opens to show each rank's copy.

const FOLD_MS = 3000;
const FOLD_SPAN = 512; // positions a copy may lie after the first

export class Folds {
  constructor() {
    this.hiddenBy = new Map(); // position -> position of the row it folds into
    this.members = new Map(); // position of a folded row -> [{position, task}] (itself first)
    this.open = new Set(); // folded rows shown opened
  }

  /** Recompute for the loaded rows around the window (`rows`: Map position -> {task, text, time}):
   * from FOLD_SPAN before `first`, so that the rows on screen fold as they would over the whole log. */
  compute(rows, first, last) {
    this.hiddenBy.clear();
    this.members.clear();
    this.from = Math.max(0, first - FOLD_SPAN);
    this.to = last + FOLD_SPAN;
    let recent = new Map(); // text -> {position, time, tasks}
    for (let position = this.from; position <= this.to; position += 1) {
      const row = rows.get(position);
      if (!row) { // a gap in what is loaded: start afresh
        recent = new Map();
        continue;
      }
      const text = row.text;
      if (!text.trim()) continue;
      const first = recent.get(text);
      if (first && row.time - first.time <= FOLD_MS && position - first.position <= FOLD_SPAN
          && !first.tasks.has(row.task)) {
        first.tasks.add(row.task);
        this.hiddenBy.set(position, first.position);
        this.members.get(first.position).push({ position, task: row.task });
        continue;
      }
      recent.set(text, { position, time: row.time, tasks: new Set([row.task]) });
      this.members.set(position, [{ position, task: row.task }]);
    }
    for (const [position, members] of this.members) if (members.length < 2) this.members.delete(position);
  }

  /** Whether the window [first, last] has come near the edge of what was computed. */
  stale(first, last) {
    return this.from === undefined || (first - FOLD_SPAN / 2 < this.from && this.from > 0) || last + FOLD_SPAN / 2 > this.to;
  }

  /** A short key of row `position`'s fold state: part of the key that says when to redraw it. */
  key(position) {
    if (this.hiddenBy.has(position)) return this.open.has(this.hiddenBy.get(position)) ? 'm' : 'h';
    const group = this.members.get(position);
    return group ? `${group.length}${this.open.has(position) ? 'o' : ''}` : '';
  }

  isHidden(position) {
    const by = this.hiddenBy.get(position);
    return by !== undefined && !this.open.has(by);
  }

  /** The ranks folded into the row at `position` (null when it folds nothing). */
  ranksOf(position) {
    return this.members.get(position) || null;
  }

  toggle(position) {
    if (this.open.has(position)) this.open.delete(position);
    else this.open.add(position);
  }
}
