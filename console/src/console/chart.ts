// The per-stage latency chart (uPlot): STT, LLM, TTS and end to end over
// the last five minutes of the focused session. Redrawn only when a new
// sample arrived (about once a second), and resized with its container.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { MetricHistory } from './watch.js';

const SERIES: { label: string; stroke: string; dash?: number[] }[] = [
  { label: 'STT', stroke: '#2b8a3e' },
  { label: 'LLM', stroke: '#1864ab' },
  { label: 'TTS', stroke: '#c2255c' },
  { label: 'End to end', stroke: '#212529', dash: [6, 3] },
];

export class LatencyChart {
  private plot: uPlot | null = null;
  private shown: MetricHistory | null = null;
  private shownRev = -1;
  private readonly resize: ResizeObserver;

  constructor(private readonly container: HTMLElement) {
    this.resize = new ResizeObserver(() => {
      if (this.plot !== null) this.plot.setSize(this.size());
    });
    this.resize.observe(container);
  }

  private size(): { width: number; height: number } {
    return { width: Math.max(240, this.container.clientWidth), height: 180 };
  }

  /** Shows `history`; cheap when nothing changed since the last call. */
  show(history: MetricHistory): void {
    if (history === this.shown && history.rev === this.shownRev) return;
    this.shown = history;
    this.shownRev = history.rev;
    const data = history.series() as uPlot.AlignedData;
    if (this.plot === null) {
      this.plot = new uPlot(
        {
          ...this.size(),
          class: 'latency-plot',
          cursor: { drag: { x: false, y: false } },
          legend: { live: false },
          scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(500, Math.ceil(max / 250) * 250)] } },
          axes: [{}, { label: 'ms', size: 56 }],
          series: [{}, ...SERIES.map((s) => ({ label: s.label, stroke: s.stroke, width: 1.5, ...(s.dash ? { dash: s.dash } : {}), value: (_u: uPlot, v: number | null) => (v === null ? '–' : `${Math.round(v)} ms`) }))],
        },
        data,
        this.container,
      );
    } else {
      this.plot.setData(data);
    }
  }

  destroy(): void {
    this.resize.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }
}
