// A window onto a list of any length (10 million log lines and more), with its own scrollbar.
//
// Browsers cannot make an element taller than ~16-33 million px, so this is not one tall list
// in a native scroll box: the position is (row index, pixels into that row), only the rows that
// fit the window exist in the DOM (a few dozen nodes, recycled), and a drawn scrollbar stands
// for the whole list. Wheel, keys, touch and the scrollbar move the position; rows are laid out
// from it on the next animation frame. Rows may be of any height (wrapped lines are measured
// after they are filled) or hidden (height 0: folded lines).

const MIN_THUMB = 24;

export class Viewport {
  /**
   * @param {HTMLElement} root  emptied and filled with the window and its scrollbar
   * @param {object} o
   *   renderRow(index, node)  fill `node` for row `index` (called when rowKey changes)
   *   rowKey(index)           changes whenever row `index` must be drawn again
   *   isHidden(index)         rows to skip (height 0)
   *   onRange(first, last)    the rows on screen after each layout (fetch what is missing)
   *   onUserScroll()          the user moved the window (wheel, keys, scrollbar, touch)
   */
  constructor(root, o) {
    this.o = { isHidden: () => false, onRange: () => {}, onUserScroll: () => {}, ...o };
    this.count = 0;
    this.top = 0;
    this.offset = 0;
    this.wrap = false;
    this.heights = new Map();
    this.frame = 0;
    this.first = 0;
    this.last = -1;
    this.bottomGap = 0;
    this.highlighted = -1;

    root.replaceChildren();
    this.box = document.createElement('div');
    this.box.className = 'vp';
    this.box.tabIndex = 0;
    this.rows = document.createElement('div');
    this.rows.className = 'vp-rows';
    this.bar = document.createElement('div');
    this.bar.className = 'vp-bar';
    this.thumb = document.createElement('div');
    this.thumb.className = 'vp-thumb';
    this.bar.append(this.thumb);
    this.box.append(this.rows, this.bar);
    root.append(this.box);
    this.pool = new Map(); // row index -> node on screen
    this.spare = [];

    const probe = document.createElement('div');
    probe.className = 'row';
    probe.textContent = 'X';
    this.rows.append(probe);
    this.rowHeight = probe.getBoundingClientRect().height || 18;
    probe.remove();

    this.box.addEventListener('wheel', (e) => this.onWheel(e), { passive: false });
    this.box.addEventListener('keydown', (e) => this.onKey(e));
    this.thumb.addEventListener('pointerdown', (e) => this.onThumb(e));
    this.bar.addEventListener('pointerdown', (e) => this.onTrack(e));
    this.rows.addEventListener('pointerdown', (e) => this.onTouchStart(e));
    // Sizes are read when they change, never while laying out (a read there forces a layout).
    this.width = this.box.clientWidth;
    this.boxHeight = this.box.clientHeight;
    this.barHeight = this.bar.clientHeight;
    this.resize = new ResizeObserver(() => {
      const stuck = this.count > 0 && this.atBottom(); // the end stays in view as the window changes size
      if (this.box.clientWidth !== this.width) {
        this.width = this.box.clientWidth;
        this.heights.clear();
      }
      this.boxHeight = this.box.clientHeight;
      this.barHeight = this.bar.clientHeight;
      if (stuck) this.scrollToEnd();
      this.schedule();
    });
    this.resize.observe(this.box);
  }

  destroy() {
    this.resize.disconnect();
    cancelAnimationFrame(this.frame);
  }

  get height() {
    return this.boxHeight;
  }

  /** Rows that fit the window at the base row height. */
  get visibleRows() {
    return Math.max(1, Math.floor(this.height / this.rowHeight));
  }

  setCount(count) {
    this.count = Math.max(0, count);
    this.schedule();
  }

  setWrap(wrap) {
    this.wrap = wrap;
    this.box.classList.toggle('wrap', wrap);
    this.heights.clear();
    for (const node of this.pool.values()) node.jtKey = null;
    this.schedule();
  }

  /** Redraw (rows whose key changed are filled again). */
  refresh() {
    this.schedule();
  }

  /** Forget measured heights (rows changed size: folds opened or closed). */
  relayout() {
    this.heights.clear();
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  rowHeightOf(index) {
    if (this.o.isHidden(index)) return 0;
    return this.heights.get(index) ?? this.rowHeight;
  }

  // -- moving --------------------------------------------------------------------------------

  scrollBy(dy) {
    this.offset += dy;
    while (this.offset > 0 && this.top < this.count - 1) {
      const h = this.rowHeightOf(this.top);
      if (this.offset < h) break;
      this.offset -= h;
      this.top += 1;
    }
    while (this.offset < 0 && this.top > 0) {
      this.top -= 1;
      this.offset += this.rowHeightOf(this.top);
    }
    if (this.offset < 0) this.offset = 0;
    this.schedule();
  }

  /** Put row `index` at the top, centre or bottom of the window. */
  jumpTo(index, align = 'center') {
    this.top = Math.min(Math.max(0, Math.floor(index)), Math.max(0, this.count - 1));
    this.offset = 0;
    if (align === 'center') this.scrollBy(-(this.height - this.rowHeight) / 2);
    else if (align === 'bottom') this.scrollBy(-(this.height - this.rowHeight));
    this.schedule();
  }

  scrollToEnd() {
    this.jumpTo(this.count - 1, 'bottom');
  }

  /** The last row is on screen, its bottom edge in the window. */
  atBottom() {
    return this.count === 0 || (this.last >= this.count - 1 && this.bottomGap >= -1);
  }

  /** Where the window is, 0 … 1. */
  fraction() {
    const room = this.count - this.visibleRows;
    if (room <= 0 || this.atBottom()) return this.count && room > 0 ? 1 : 0;
    return Math.min(1, (this.top + this.offset / this.rowHeight) / room);
  }

  moveToFraction(fraction) {
    const room = Math.max(0, this.count - this.visibleRows);
    const at = Math.min(1, Math.max(0, fraction)) * room;
    this.top = Math.floor(at);
    this.offset = (at - this.top) * this.rowHeight;
    this.schedule();
  }

  user(move) {
    move();
    this.o.onUserScroll();
  }

  onWheel(e) {
    e.preventDefault();
    const unit = e.deltaMode === 1 ? this.rowHeight : e.deltaMode === 2 ? this.height : 1;
    const sideways = e.shiftKey ? e.deltaY : e.deltaX; // long lines scroll sideways natively
    if (sideways) this.rows.scrollLeft += sideways * unit;
    if (e.deltaY && !e.shiftKey) this.user(() => this.scrollBy(e.deltaY * unit));
  }

  onKey(e) {
    const page = Math.max(this.rowHeight, this.height - this.rowHeight);
    const moves = {
      ArrowDown: () => this.scrollBy(this.rowHeight),
      ArrowUp: () => this.scrollBy(-this.rowHeight),
      PageDown: () => this.scrollBy(page),
      PageUp: () => this.scrollBy(-page),
      ' ': () => this.scrollBy(e.shiftKey ? -page : page),
      Home: () => this.jumpTo(0, 'top'),
      End: () => this.scrollToEnd(),
    };
    const move = moves[e.key];
    if (!move) return;
    e.preventDefault();
    this.user(move);
  }

  onThumb(e) {
    e.preventDefault();
    e.stopPropagation();
    this.thumb.setPointerCapture(e.pointerId);
    const startY = e.clientY;
    const start = this.fraction();
    const travel = Math.max(1, this.barHeight - this.thumb.offsetHeight);
    const move = (m) => this.user(() => this.moveToFraction(start + (m.clientY - startY) / travel));
    const up = () => {
      this.thumb.removeEventListener('pointermove', move);
      this.thumb.removeEventListener('pointerup', up);
    };
    this.thumb.addEventListener('pointermove', move);
    this.thumb.addEventListener('pointerup', up);
  }

  onTrack(e) {
    if (e.target !== this.bar) return;
    const thumbTop = this.thumb.getBoundingClientRect().top;
    const page = Math.max(this.rowHeight, this.height - this.rowHeight);
    this.user(() => this.scrollBy(e.clientY < thumbTop ? -page : page));
  }

  onTouchStart(e) {
    if (e.pointerType !== 'touch') return;
    let lastY = e.clientY;
    const move = (m) => {
      this.user(() => this.scrollBy(lastY - m.clientY));
      lastY = m.clientY;
    };
    const end = () => {
      window.removeEventListener('pointermove', move);
      window.removeEventListener('pointerup', end);
    };
    window.addEventListener('pointermove', move);
    window.addEventListener('pointerup', end);
  }

  // -- layout --------------------------------------------------------------------------------

  node(index) {
    let node = this.pool.get(index);
    if (!node) {
      node = this.spare.pop() || document.createElement('div');
      node.jtKey = null;
      this.rows.append(node);
    }
    return node;
  }

  fill(index, node) {
    const key = this.o.rowKey(index);
    if (node.jtKey !== key) {
      node.jtKey = key;
      node.className = 'row';
      node.replaceChildren();
      this.o.renderRow(index, node);
      this.heights.delete(index);
    }
    node.classList.toggle('hl', index === this.highlighted);
  }

  /** Rows from the position down until the window is full: [index, node, height] each. */
  collect(height) {
    const placed = [];
    let index = this.top;
    let y = -this.offset;
    while (index < this.count && y < height) {
      const batch = [];
      let guess = y;
      while (index < this.count && guess < height) {  // fill first, measure after: one layout
        if (!this.o.isHidden(index)) {
          const node = this.node(index);
          this.fill(index, node);
          batch.push([index, node]);
          guess += this.rowHeightOf(index);
        }
        index += 1;
      }
      for (const [i, node] of batch) {
        const h = this.wrap ? node.offsetHeight || this.rowHeight : this.rowHeight;
        if (this.wrap) this.heights.set(i, h);
        placed.push([i, node, h]);
        y += h;
      }
    }
    return { placed, bottom: y };
  }

  render(again = true) {
    this.frame = 0;
    const height = this.height;
    if (this.top >= this.count) {
      this.top = Math.max(0, this.count - 1);
      this.offset = 0;
    }
    const kept = new Map();
    const { placed, bottom } = this.collect(height);
    for (const [index, node] of placed) kept.set(index, node);
    for (const [index, node] of this.pool) {
      if (!kept.has(index)) {
        node.remove();
        if (this.spare.length < 64) this.spare.push(node);
      }
    }
    this.pool = kept;
    const endReached = !placed.length || placed[placed.length - 1][0] >= this.lastShown();
    if (again && endReached && bottom < height && (this.top > 0 || this.offset > 0)) {
      this.scrollBy(bottom - height); // the end of the list sits at the bottom of the window
      this.render(false);
      return;
    }
    let y = -this.offset;
    for (const [, node, h] of placed) {
      node.style.transform = `translateY(${y}px)`;
      y += h;
    }
    this.first = placed.length ? placed[0][0] : 0;
    this.last = placed.length ? placed[placed.length - 1][0] : -1;
    this.bottomGap = height - bottom;
    this.drawBar();
    this.o.onRange(this.first, Math.max(this.last, this.first + this.visibleRows));
  }

  lastShown() {
    let index = this.count - 1;
    while (index > 0 && this.o.isHidden(index)) index -= 1;
    return index;
  }

  drawBar() {
    const track = this.barHeight;
    const shown = Math.min(1, this.visibleRows / Math.max(1, this.count));
    const thumb = Math.max(MIN_THUMB, Math.round(track * shown));
    this.bar.classList.toggle('idle', shown >= 1);
    this.thumb.style.height = `${thumb}px`;
    this.thumb.style.transform = `translateY(${Math.round((track - thumb) * this.fraction())}px)`;
  }

  highlight(index) {
    this.highlighted = index;
    for (const [i, node] of this.pool) node.classList.toggle('hl', i === index);
  }
}
