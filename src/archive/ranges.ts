// Byte ranges of a zip for a partial fetch, as pure functions: where each entry's bytes lie (local header, data,
// data descriptor), coalescing neighbours across small gaps, and the rule for when a partial fetch pays
// (planPartial). The ranges are downloaded by the parallel ranged download (src/api/parallel.ts, its `ranges`).
import type { Directory } from './central-directory.ts';
import { planEntries } from './plan.ts';

/** Bytes [start, end) of the archive. */
export interface Span {
  start: number;
  end: number;
}

/** The most an entry can occupy beyond its compressed data: the fixed header, a name and an extra field (64 KiB each), a zip64 data descriptor. */
const MAX_ENTRY_OVERHEAD = 30 + 0xffff + 0xffff + 24;

export const spanBytes = (spans: readonly Span[]): number => spans.reduce((n, s) => n + (s.end - s.start), 0);

/**
 * The spans of the `selected` entries (indices into `all`): from each local header to the next entry's local header (or to the central
 * directory at `directoryStart`, for the last), which covers the header, its extra field, the data and any data
 * descriptor exactly; capped at the most an entry can occupy, should anything else lie between entries.
 */
export function entrySpans(all: Directory, selected: ArrayLike<number>, directoryStart: number): Span[] {
  const offsets = all.offsetToLocalFileHeader.slice(0, all.length).sort();
  const nextAfter = (offset: number): number => {
    let lo = 0;
    let hi = offsets.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (offsets[mid]! <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo < offsets.length ? Math.min(offsets[lo]!, directoryStart) : directoryStart;
  };
  return Array.from(selected, (i) => {
    const start = all.offsetToLocalFileHeader[i]!;
    const cap = start + MAX_ENTRY_OVERHEAD + all.compressedSize[i]!;
    return { start, end: Math.max(start, Math.min(nextAfter(start), cap)) };
  });
}

/** Sorted, with overlapping and touching spans merged. */
export function normalize(spans: readonly Span[]): Span[] {
  const sorted = spans.filter((s) => s.end > s.start).sort((a, b) => a.start - b.start || a.end - b.end);
  const out: Span[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else out.push({ start: s.start, end: s.end });
  }
  return out;
}

/**
 * Merges neighbours across the smallest gaps first while the bytes downloaded for nothing stay within `slack`
 * (one request fewer per gap bridged). The result is sorted and disjoint.
 */
export function coalesce(spans: readonly Span[], slack: number): Span[] {
  const merged = normalize(spans);
  if (merged.length < 2) return merged;
  const gaps = merged.slice(1).map((s, i) => ({ i, size: s.start - merged[i]!.end }));
  gaps.sort((a, b) => a.size - b.size || a.i - b.i);
  const bridge = new Set<number>();
  let spent = 0;
  for (const g of gaps) {
    if (spent + g.size > slack) break;
    spent += g.size;
    bridge.add(g.i);
  }
  const out: Span[] = [{ ...merged[0]! }];
  for (let i = 1; i < merged.length; i++) {
    if (bridge.has(i - 1)) out[out.length - 1]!.end = merged[i]!.end;
    else out.push({ ...merged[i]! });
  }
  return out;
}

/** A partial fetch pays when the selected entries' ranges are at most this fraction of the archive. */
const PARTIAL_MAX_FRACTION = 0.5;
/** Bytes of gaps coalescing may download for nothing: this fraction of the selected bytes, at least GAP_MIN. */
const GAP_FRACTION = 0.02;
const GAP_MIN = 64 * 1024;

interface PartialPlan {
  /** Sorted, disjoint ranges to download. */
  ranges: Span[];
  /** Bytes the ranges add up to. */
  bytes: number;
  /** Entries whose bytes are needed: the selected files and every symlink (each target is checked). */
  entries: number;
}

/**
 * The ranges of a partial fetch of `directory` with include/exclude, or undefined when it does not pay (no
 * selection, or the ranges would exceed PARTIAL_MAX_FRACTION of `total`) or the directory does not plan (an invalid
 * entry: the whole-archive path rejects it with the right message).
 */
export function planPartial(
  directory: Directory,
  o: { include: string[]; exclude: string[]; directoryStart: number; total: number },
): PartialPlan | undefined {
  if (o.include.length === 0 && o.exclude.length === 0) return undefined;
  if (o.directoryStart > o.total) return undefined;
  const needed: number[] = [];
  try {
    const plan = planEntries(directory, o.include, o.exclude);
    for (let i = 0; i < plan.length; i++) {
      const type = plan.type(i);
      if (type === 'symlink' || (type === 'file' && plan.selected(i))) needed.push(i);
    }
  } catch {
    return undefined;
  }
  const spans = entrySpans(directory, needed, o.directoryStart);
  const slack = Math.max(GAP_MIN, Math.floor(spanBytes(spans) * GAP_FRACTION));
  const ranges = coalesce(spans, slack);
  const bytes = spanBytes(ranges);
  if (bytes > o.total * PARTIAL_MAX_FRACTION) return undefined;
  return { ranges, bytes, entries: needed.length };
}
