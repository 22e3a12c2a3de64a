// Inline SVG charts for the simulator's HTML report: line charts and grouped bar charts, written
// as self-contained markup (no scripts, no external references). Long series are reduced to at
// most `max_points` points, keeping each bucket's highest value so that spikes stay visible.
//
//   LineChart c{.title = "Memory", .x_label = "hours", .y_label = "GiB"};
//   c.series.push_back({.name = "demand", .color = "#d62728", .x = hours, .y = gib});
//   std::string svg = RenderLineChart(c);
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace autoscale::sim {

// Escapes &, <, >, " and ' for HTML text and attributes.
std::string HtmlEscape(std::string_view text);

struct LineSeries {
  std::string name{};
  std::string color{};
  std::vector<double> x{};
  std::vector<double> y{};
  bool dashed = false;
  // Draw as a step function (the value holds until the next point).
  bool step = false;
  double width = 1.5;
};

struct LineChart {
  std::string title{};
  std::string x_label{};
  std::string y_label{};
  int width = 720;
  int height = 240;
  std::vector<LineSeries> series{};
  // Horizontal reference lines (for example a watermark), dashed grey.
  std::vector<double> reference_lines{};
  bool legend = true;
  size_t max_points = 1200;
};

std::string RenderLineChart(const LineChart& chart);

struct BarGroup {
  std::string name{};
  std::string color{};
  std::vector<double> values{};  // one per category
};

struct BarChart {
  std::string title{};
  std::string y_label{};
  std::vector<std::string> categories{};
  std::vector<BarGroup> groups{};
  // A logarithmic value axis (values below 1 draw no bar).
  bool log_y = false;
  int width = 720;
  int height = 240;
};

std::string RenderBarChart(const BarChart& chart);

}  // namespace autoscale::sim
