using System.Globalization;
using System.Xml.Linq;
using EditRuntime.Reports;
using NUnit.Framework;

namespace EditRuntime.ReportTests;

public sealed class SvgPlotTests
{
    private static readonly XNamespace Ns = "http://www.w3.org/2000/svg";

    [Test]
    public void Points_map_into_the_plot_area_in_order()
    {
        var svg = XDocument.Parse(SvgPlot.Lines("t", "x", "y", [new PlotSeries("a", "red", [(0, 0), (5, 0.5), (10, 1)])], 0, 1));
        var pts = svg.Descendants(Ns + "polyline").Single().Attribute("points")!.Value.Split(' ')
            .Select(p => p.Split(',').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToList();
        Assert.That(pts, Has.Count.EqualTo(3));
        Assert.That(pts[0][0], Is.LessThan(pts[1][0]).And.LessThan(pts[2][0]), "x grows to the right");
        Assert.That(pts[0][1], Is.GreaterThan(pts[1][1]).And.GreaterThan(pts[2][1]), "y grows upwards");
        Assert.That(pts[1][0], Is.EqualTo((pts[0][0] + pts[2][0]) / 2).Within(0.1), "linear x");
        Assert.That(pts[1][1], Is.EqualTo((pts[0][1] + pts[2][1]) / 2).Within(0.1), "linear y");
    }

    [Test]
    public void NaN_points_are_left_out_and_text_is_escaped()
    {
        var text = SvgPlot.Lines("a < b & \"c\"", "x", "y", [new PlotSeries("s<1>", "blue", [(1, 0.2), (2, double.NaN), (3, 0.4)])]);
        var svg = XDocument.Parse(text);
        Assert.That(svg.Descendants(Ns + "circle").Count(), Is.EqualTo(2));
        Assert.That(svg.Descendants(Ns + "text").Select(t => t.Value), Does.Contain("a < b & \"c\"").And.Contain("s<1>"));
        Assert.That(text, Does.Not.Contain("NaN"));
    }

    [Test]
    public void Ticks_are_round_and_cover_the_range()
    {
        Assert.That(SvgPlot.Ticks(0, 1, 5), Is.EqualTo(new[] { 0, 0.2, 0.4, 0.6, 0.8, 1.0 }).Within(1e-12));
        Assert.That(SvgPlot.Ticks(3, 97, 8), Is.EqualTo(new double[] { 20, 40, 60, 80 }).Within(1e-9));
    }

    [Test]
    public void Log_x_needs_positive_values()
    {
        Assert.Throws<ArgumentException>(() => SvgPlot.Lines("t", "x", "y", [new PlotSeries("a", "red", [(0, 1), (1, 2)])], logX: true));
        var svg = XDocument.Parse(SvgPlot.Lines("t", "x", "y", [new PlotSeries("a", "red", [(0.1, 1), (1, 2), (10, 3)])], logX: true));
        var xs = svg.Descendants(Ns + "circle").Select(c => double.Parse(c.Attribute("cx")!.Value, CultureInfo.InvariantCulture)).ToList();
        Assert.That(xs[1] - xs[0], Is.EqualTo(xs[2] - xs[1]).Within(0.2), "decades are evenly spaced");
    }
}
