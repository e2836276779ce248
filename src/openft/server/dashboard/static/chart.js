"use strict";
// A line chart in an <svg viewBox="0 0 W H">: one <path class="series"> per series, axes with
// min/max ticks, and a legend. series = [{name, color, dashed, points: [[x, y], ...]}].
const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceRange(min, max) {
  if (min === max) return [min - 1, max + 1];
  const pad = (max - min) * 0.05;
  return [min - pad, max + pad];
}

function drawChart(root, series, { xLabel = "step", yDigits = 2 } = {}) {
  const [, , width, height] = root.getAttribute("viewBox").split(" ").map(Number);
  const margin = { left: 48, right: 12, top: 12, bottom: 44 };
  const plotted = series.filter((s) => s.points.length);
  root.replaceChildren();
  if (!plotted.length) {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, "no data yet"));
    return;
  }
  const xs = plotted.flatMap((s) => s.points.map((p) => p[0]));
  const ys = plotted.flatMap((s) => s.points.map((p) => p[1]));
  const [x0, x1] = niceRange(Math.min(...xs), Math.max(...xs));
  const [y0, y1] = niceRange(Math.min(...ys), Math.max(...ys));
  const innerW = width - margin.left - margin.right;
  const innerH = height - margin.top - margin.bottom;
  const sx = (x) => margin.left + ((x - x0) / (x1 - x0)) * innerW;
  const sy = (y) => margin.top + innerH - ((y - y0) / (y1 - y0)) * innerH;

  const axes = svg("g", { class: "axes" });
  axes.append(svg("line", { x1: margin.left, y1: margin.top, x2: margin.left, y2: margin.top + innerH }));
  axes.append(svg("line", { x1: margin.left, y1: margin.top + innerH, x2: margin.left + innerW, y2: margin.top + innerH }));
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    axes.append(svg("text", { x: margin.left - 4, y: sy(y) + 4, "text-anchor": "end" }, y.toFixed(yDigits)));
  }
  const xMin = Math.min(...xs), xMax = Math.max(...xs);
  for (const x of xMin === xMax ? [xMin] : [xMin, xMax]) {
    axes.append(svg("text", { x: sx(x), y: margin.top + innerH + 14, "text-anchor": "middle" }, String(x)));
  }
  axes.append(svg("text", { x: margin.left + innerW / 2, y: margin.top + innerH + 28, "text-anchor": "middle" }, xLabel));
  root.append(axes);

  plotted.forEach((s, i) => {
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    const attrs = { d, class: "series", stroke: s.color, fill: "none", "data-name": s.name, "data-points": s.points.length };
    if (s.dashed) attrs["stroke-dasharray"] = "5 3";
    root.append(svg("path", attrs));
    if (s.points.length === 1) {  // one point draws no line: mark it
      const [x, y] = s.points[0];
      root.append(svg("circle", { cx: sx(x), cy: sy(y), r: 3, fill: s.color }));
    }
    const legendX = margin.left + 8 + i * 120;
    root.append(svg("rect", { x: legendX, y: height - 12, width: 12, height: 3, fill: s.color }));
    root.append(svg("text", { x: legendX + 16, y: height - 8, class: "legend" }, s.name));
  });
}
