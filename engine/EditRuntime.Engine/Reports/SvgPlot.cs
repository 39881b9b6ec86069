using System.Globalization;
using System.Net;
using System.Text;

namespace EditRuntime.Reports;

/// <summary>One line of a plot: its legend name, colour (any SVG colour) and points in data units.</summary>
public sealed record PlotSeries(string Name, string Color, IReadOnlyList<(double X, double Y)> Points, bool Dashed = false);

/// <summary>
/// A small self-contained SVG line chart (no scripts, no external fonts): axes with rounded ticks,
/// a marker at every point, a legend. Enough for metric-against-edits curves and parameter sweeps;
/// NaN points are left out of their line.
/// </summary>
public static class SvgPlot
{
    private const int W = 640, H = 400, Left = 64, Right = 150, Top = 40, Bottom = 56;

    public static string Lines(string title, string xLabel, string yLabel, IReadOnlyList<PlotSeries> series,
        double? yMin = null, double? yMax = null, bool logX = false)
    {
        var pts = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
        if (logX && pts.Any(p => p.X <= 0)) throw new ArgumentException("log x axis needs positive x values.");
        double Fx(double x) => logX ? Math.Log10(x) : x;
        double x0 = pts.Count == 0 ? 0 : pts.Min(p => Fx(p.X)), x1 = pts.Count == 0 ? 1 : pts.Max(p => Fx(p.X));
        if (x1 - x0 < 1e-12) { x0 -= 0.5; x1 += 0.5; }
        double y0 = yMin ?? (pts.Count == 0 ? 0 : pts.Min(p => p.Y)), y1 = yMax ?? (pts.Count == 0 ? 1 : pts.Max(p => p.Y));
        if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
        double pw = W - Left - Right, ph = H - Top - Bottom;
        double Px(double x) => Left + (Fx(x) - x0) / (x1 - x0) * pw;
        double Py(double y) => Top + (1 - (y - y0) / (y1 - y0)) * ph;

        var sb = new StringBuilder();
        sb.Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        sb.Append($"<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n");
        sb.Append($"<text x=\"{W / 2}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{Esc(title)}</text>\n");
        // Grid and ticks.
        foreach (var t in Ticks(y0, y1, 6))
        {
            double py = Py(t);
            sb.Append($"<line x1=\"{Left}\" y1=\"{F(py)}\" x2=\"{Left + pw}\" y2=\"{F(py)}\" stroke=\"#e0e0e0\"/>");
            sb.Append($"<text x=\"{Left - 6}\" y=\"{F(py + 4)}\" text-anchor=\"end\">{Esc(Label(t))}</text>\n");
        }
        var xTicks = logX ? Ticks(x0, x1, 6).Where(t => Math.Abs(t - Math.Round(t)) < 1e-9).Select(t => Math.Pow(10, t)).ToList()
                          : Ticks(x0, x1, 8).ToList();
        foreach (var t in xTicks)
        {
            double px = Px(t);
            sb.Append($"<line x1=\"{F(px)}\" y1=\"{Top}\" x2=\"{F(px)}\" y2=\"{Top + ph}\" stroke=\"#e0e0e0\"/>");
            sb.Append($"<text x=\"{F(px)}\" y=\"{Top + ph + 18}\" text-anchor=\"middle\">{Esc(Label(t))}</text>\n");
        }
        sb.Append($"<rect x=\"{Left}\" y=\"{Top}\" width=\"{F(pw)}\" height=\"{F(ph)}\" fill=\"none\" stroke=\"black\"/>\n");
        sb.Append($"<text x=\"{F(Left + pw / 2)}\" y=\"{H - 14}\" text-anchor=\"middle\">{Esc(xLabel)}</text>\n");
        sb.Append($"<text transform=\"translate(16 {F(Top + ph / 2)}) rotate(-90)\" text-anchor=\"middle\">{Esc(yLabel)}</text>\n");
        // Lines, markers, legend.
        for (int i = 0; i < series.Count; i++)
        {
            var s = series[i];
            var good = s.Points.Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
            string dash = s.Dashed ? " stroke-dasharray=\"6 4\"" : "";
            if (good.Count > 1)
                sb.Append($"<polyline fill=\"none\" stroke=\"{Esc(s.Color)}\" stroke-width=\"2\"{dash} points=\"{string.Join(" ", good.Select(p => $"{F(Px(p.X))},{F(Py(p.Y))}"))}\"/>\n");
            foreach (var p in good)
                sb.Append($"<circle cx=\"{F(Px(p.X))}\" cy=\"{F(Py(p.Y))}\" r=\"3\" fill=\"{Esc(s.Color)}\"><title>{Esc($"{s.Name}: {Label(p.X)}, {p.Y.ToString("0.000", CultureInfo.InvariantCulture)}")}</title></circle>\n");
            double ly = Top + 10 + i * 20;
            sb.Append($"<line x1=\"{Left + pw + 12}\" y1=\"{F(ly)}\" x2=\"{Left + pw + 36}\" y2=\"{F(ly)}\" stroke=\"{Esc(s.Color)}\" stroke-width=\"2\"{dash}/>");
            sb.Append($"<text x=\"{Left + pw + 42}\" y=\"{F(ly + 4)}\">{Esc(s.Name)}</text>\n");
        }
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    /// <summary>About <paramref name="target"/> round tick values (1, 2, 5 × 10^k steps) covering [lo, hi].</summary>
    public static IEnumerable<double> Ticks(double lo, double hi, int target)
    {
        double raw = (hi - lo) / Math.Max(1, target);
        double mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1.0, 2.0, 5.0, 10.0 }.Select(m => m * mag).First(s => s >= raw);
        for (double t = Math.Ceiling(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
            yield return Math.Abs(t) < step * 1e-9 ? 0 : t;
    }

    private static string Label(double v) => v.ToString(Math.Abs(v) >= 1000 || v == Math.Round(v) ? "0" : "0.###", CultureInfo.InvariantCulture);
    private static string F(double v) => v.ToString("0.#", CultureInfo.InvariantCulture);
    private static string Esc(string s) => WebUtility.HtmlEncode(s);
}
