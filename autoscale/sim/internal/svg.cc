#include "autoscale/sim/internal/svg.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace autoscale::sim {
namespace {

constexpr int kLeft = 64, kRight = 16, kTop = 28, kBottom = 40;

// About `n` round tick values covering [lo, hi].
std::vector<double> Ticks(double lo, double hi, int n) {
  std::vector<double> ticks;
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / n;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  }
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  }
  return ticks;
}

// Tick labels: "0.25", "12", "1500", "25k", "1.2M".
std::string Num(double v) {
  const double a = std::abs(v);
  if (a >= 1e6) return absl::StrFormat("%.3gM", v / 1e6);
  if (a >= 1e4) return absl::StrFormat("%.3gk", v / 1e3);
  if (a >= 1000) return absl::StrFormat("%.0f", v);
  return absl::StrFormat("%.4g", v);
}

std::string Px(double v) { return absl::StrFormat("%.1f", v); }

// At most `max_points` points: each bucket of consecutive x keeps its highest y.
void Reduce(const LineSeries& s, size_t max_points, std::vector<double>* x,
            std::vector<double>* y) {
  const size_t n = std::min(s.x.size(), s.y.size());
  if (n <= max_points || max_points < 2) {
    x->assign(s.x.begin(), s.x.begin() + n);
    y->assign(s.y.begin(), s.y.begin() + n);
    return;
  }
  const size_t per = (n + max_points - 1) / max_points;
  for (size_t i = 0; i < n; i += per) {
    const size_t end = std::min(n, i + per);
    double best = s.y[i];
    for (size_t j = i; j < end; ++j) best = std::max(best, s.y[j]);
    x->push_back(s.x[i]);
    y->push_back(best);
  }
}

std::string Frame(int width, int height, const std::string& title) {
  return absl::StrFormat(
      "<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "role=\"img\" font-family=\"sans-serif\" font-size=\"11\">"
      "<title>%s</title>"
      "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>"
      "<text x=\"%d\" y=\"16\" font-size=\"13\" font-weight=\"bold\">%s</text>",
      width, height, width, height, HtmlEscape(title), width, height, kLeft, HtmlEscape(title));
}

struct LegendEntry {
  std::string name;
  std::string color;
  bool dashed = false;
  bool box = false;  // a filled box (bars) instead of a line
};

// The legend under a chart whose plot ends at `top`: entries left to right, wrapped to `width`.
// Returns the markup; `*height` is what it adds to the chart.
std::string Legend(const std::vector<LegendEntry>& entries, int width, int top, int* height) {
  std::string out;
  double x = kLeft;
  int row = 0;
  bool any = false;
  for (const LegendEntry& e : entries) {
    if (e.name.empty()) continue;
    // About 7 px per character at 11 px, plus the key.
    const double w = 7.0 * static_cast<double>(e.name.size()) + 36;
    if (any && x + w > width - kRight) {
      x = kLeft;
      ++row;
    }
    any = true;
    const int y = top + 12 + 16 * row;
    if (e.box) {
      absl::StrAppend(&out, "<rect x=\"", Px(x), "\" y=\"", y - 9,
                      "\" width=\"12\" height=\"10\" fill=\"", HtmlEscape(e.color), "\"/>");
    } else {
      absl::StrAppend(&out, "<line x1=\"", Px(x), "\" x2=\"", Px(x + 16), "\" y1=\"", y - 4,
                      "\" y2=\"", y - 4, "\" stroke=\"", HtmlEscape(e.color),
                      "\" stroke-width=\"2\"", e.dashed ? " stroke-dasharray=\"5 3\"" : "", "/>");
    }
    absl::StrAppend(&out, "<text x=\"", Px(x + 20), "\" y=\"", y, "\">", HtmlEscape(e.name),
                    "</text>");
    x += w;
  }
  *height = any ? 16 * (row + 1) + 4 : 0;
  return out;
}
}  // namespace

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string RenderLineChart(const LineChart& c) {
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo;
  double y_hi = 0;
  std::vector<std::vector<double>> xs(c.series.size()), ys(c.series.size());
  for (size_t i = 0; i < c.series.size(); ++i) {
    Reduce(c.series[i], c.max_points, &xs[i], &ys[i]);
    for (double v : xs[i]) x_lo = std::min(x_lo, v), x_hi = std::max(x_hi, v);
    for (double v : ys[i]) {
      if (std::isfinite(v)) y_hi = std::max(y_hi, v);
    }
  }
  for (double r : c.reference_lines) y_hi = std::max(y_hi, r);
  if (!std::isfinite(x_lo)) x_lo = 0, x_hi = 1;
  if (x_hi <= x_lo) x_hi = x_lo + 1;
  if (y_hi <= 0) y_hi = 1;
  const std::vector<double> yt = Ticks(0, y_hi * 1.05, 5);
  y_hi = std::max(y_hi * 1.05, yt.back());
  const double pw = c.width - kLeft - kRight, ph = c.height - kTop - kBottom;
  auto X = [&](double v) { return kLeft + (v - x_lo) / (x_hi - x_lo) * pw; };
  auto Y = [&](double v) { return kTop + ph - v / y_hi * ph; };

  std::vector<LegendEntry> entries;
  if (c.legend) {
    for (const LineSeries& s : c.series) entries.push_back({s.name, s.color, s.dashed, false});
  }
  int legend_height = 0;
  const std::string legend = Legend(entries, c.width, c.height, &legend_height);
  std::string out = Frame(c.width, c.height + legend_height, c.title);
  out += legend;
  // Grid and axes.
  for (double v : yt) {
    absl::StrAppend(&out, "<line x1=\"", kLeft, "\" x2=\"", Px(kLeft + pw), "\" y1=\"", Px(Y(v)),
                    "\" y2=\"", Px(Y(v)), "\" stroke=\"#e5e5e5\"/>", "<text x=\"", kLeft - 6,
                    "\" y=\"", Px(Y(v) + 4), "\" text-anchor=\"end\">", Num(v), "</text>");
  }
  for (double v : Ticks(x_lo, x_hi, 8)) {
    absl::StrAppend(&out, "<line x1=\"", Px(X(v)), "\" x2=\"", Px(X(v)), "\" y1=\"", Px(kTop + ph),
                    "\" y2=\"", Px(kTop + ph + 4), "\" stroke=\"#888888\"/>", "<text x=\"",
                    Px(X(v)), "\" y=\"", Px(kTop + ph + 16), "\" text-anchor=\"middle\">", Num(v),
                    "</text>");
  }
  absl::StrAppend(&out, "<rect x=\"", kLeft, "\" y=\"", kTop, "\" width=\"", Px(pw), "\" height=\"",
                  Px(ph), "\" fill=\"none\" stroke=\"#888888\"/>");
  absl::StrAppend(&out, "<text x=\"", Px(kLeft + pw / 2), "\" y=\"", c.height - 6,
                  "\" text-anchor=\"middle\">", HtmlEscape(c.x_label), "</text>");
  absl::StrAppend(&out, "<text x=\"14\" y=\"", Px(kTop + ph / 2),
                  "\" text-anchor=\"middle\" transform=\"rotate(-90 14 ", Px(kTop + ph / 2), ")\">",
                  HtmlEscape(c.y_label), "</text>");
  for (double r : c.reference_lines) {
    absl::StrAppend(&out, "<line x1=\"", kLeft, "\" x2=\"", Px(kLeft + pw), "\" y1=\"", Px(Y(r)),
                    "\" y2=\"", Px(Y(r)),
                    "\" stroke=\"#999999\" stroke-dasharray=\"6 4\" stroke-width=\"1\"/>");
  }
  // Lines.
  for (size_t i = 0; i < c.series.size(); ++i) {
    const LineSeries& s = c.series[i];
    if (xs[i].empty()) continue;
    std::string points;
    for (size_t j = 0; j < xs[i].size(); ++j) {
      const double y = std::isfinite(ys[i][j]) ? ys[i][j] : 0;
      if (s.step && j > 0) absl::StrAppend(&points, Px(X(xs[i][j])), ",", Px(Y(ys[i][j - 1])), " ");
      absl::StrAppend(&points, Px(X(xs[i][j])), ",", Px(Y(y)), " ");
    }
    absl::StrAppend(&out, "<polyline fill=\"none\" stroke=\"", HtmlEscape(s.color),
                    "\" stroke-width=\"", Num(s.width), "\"",
                    s.dashed ? " stroke-dasharray=\"5 3\"" : "", " points=\"", points, "\"/>");
  }
  absl::StrAppend(&out, "</svg>");
  return out;
}

std::string RenderBarChart(const BarChart& c) {
  double y_hi = 0;
  for (const BarGroup& g : c.groups) {
    for (double v : g.values) y_hi = std::max(y_hi, v);
  }
  if (y_hi <= 0) y_hi = 1;
  // Linear: round ticks; logarithmic: powers of ten, bars from 1 (0 draws nothing).
  std::vector<double> yt;
  double top;
  if (c.log_y) {
    top = std::ceil(std::log10(std::max(10.0, y_hi)));
    for (double p = 0; p <= top; ++p) yt.push_back(std::pow(10, p));
  } else {
    yt = Ticks(0, y_hi * 1.05, 5);
    top = std::max(y_hi * 1.05, yt.back());
  }
  const double pw = c.width - kLeft - kRight, ph = c.height - kTop - kBottom;
  auto Y = [&](double v) {
    const double h = c.log_y ? (v >= 1 ? std::log10(v) / top : 0) : v / top;
    return kTop + ph - std::min(h, 1.0) * ph;
  };
  const size_t n = std::max<size_t>(1, c.categories.size());
  const double slot = pw / static_cast<double>(n);
  const double bar = slot * 0.8 / static_cast<double>(std::max<size_t>(1, c.groups.size()));

  std::vector<LegendEntry> entries;
  for (const BarGroup& g : c.groups) entries.push_back({g.name, g.color, false, true});
  int legend_height = 0;
  const std::string legend = Legend(entries, c.width, c.height, &legend_height);
  std::string out = Frame(c.width, c.height + legend_height, c.title);
  out += legend;
  for (double v : yt) {
    absl::StrAppend(&out, "<line x1=\"", kLeft, "\" x2=\"", Px(kLeft + pw), "\" y1=\"", Px(Y(v)),
                    "\" y2=\"", Px(Y(v)), "\" stroke=\"#e5e5e5\"/>", "<text x=\"", kLeft - 6,
                    "\" y=\"", Px(Y(v) + 4), "\" text-anchor=\"end\">", Num(v), "</text>");
  }
  for (size_t i = 0; i < c.categories.size(); ++i) {
    absl::StrAppend(&out, "<text x=\"", Px(kLeft + slot * (static_cast<double>(i) + 0.5)),
                    "\" y=\"", Px(kTop + ph + 16), "\" text-anchor=\"middle\">",
                    HtmlEscape(c.categories[i]), "</text>");
  }
  for (size_t g = 0; g < c.groups.size(); ++g) {
    const BarGroup& group = c.groups[g];
    for (size_t i = 0; i < group.values.size() && i < c.categories.size(); ++i) {
      const double x =
          kLeft + slot * static_cast<double>(i) + slot * 0.1 + bar * static_cast<double>(g);
      const double v = group.values[i];
      absl::StrAppend(&out, "<rect x=\"", Px(x), "\" y=\"", Px(Y(v)), "\" width=\"", Px(bar * 0.95),
                      "\" height=\"", Px(kTop + ph - Y(v)), "\" fill=\"", HtmlEscape(group.color),
                      "\"><title>", HtmlEscape(group.name), " ", HtmlEscape(c.categories[i]), ": ",
                      Num(v), "</title></rect>");
    }
  }
  absl::StrAppend(&out, "<rect x=\"", kLeft, "\" y=\"", kTop, "\" width=\"", Px(pw), "\" height=\"",
                  Px(ph), "\" fill=\"none\" stroke=\"#888888\"/>");
  absl::StrAppend(&out, "<text x=\"14\" y=\"", Px(kTop + ph / 2),
                  "\" text-anchor=\"middle\" transform=\"rotate(-90 14 ", Px(kTop + ph / 2), ")\">",
                  HtmlEscape(c.y_label), "</text>");
  absl::StrAppend(&out, "</svg>");
  return out;
}

}  // namespace autoscale::sim
