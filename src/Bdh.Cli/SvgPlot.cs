using System.Globalization;
using System.Net;
using System.Text;

namespace Bdh.Cli;

/// <summary>One line (or set of points) of a chart.</summary>
public sealed record Series(string Name, IReadOnlyList<(double X, double Y)> Points, string Color, bool Markers = false, bool Line = true);

/// <summary>
/// The pictures every command writes, as SVG a reader can read: a title, named axes with ticks (linear or log), a legend,
/// and for heatmaps a colour scale, labelled rows/columns and separators (head boundaries). A heatmap's cells are one
/// embedded PNG image (a data URI), so thousands of cells stay a small file; everything around it is vector text.
/// </summary>
public static class SvgPlot
{
    private const int Left = 70, Right = 24, Top = 36, Bottom = 50;

    private static string F(double v) => v.ToString("0.##", CultureInfo.InvariantCulture);

    /// <summary>Tick label: short, in the invariant culture (1e+04 style past four digits).</summary>
    public static string Tick(double v) =>
        v == 0 ? "0" : Math.Abs(v) >= 1e4 || Math.Abs(v) < 1e-3 ? v.ToString("0.#e+0", CultureInfo.InvariantCulture) : v.ToString("0.###", CultureInfo.InvariantCulture);

    /// <summary>About five round ticks over [lo, hi] (steps of 1, 2 or 5 × 10^k), or the powers of ten within it on a log axis.</summary>
    public static double[] Ticks(double lo, double hi, bool log)
    {
        if (log)
        {
            var powers = new List<double>();
            for (int e = (int)Math.Floor(Math.Log10(lo)); e <= (int)Math.Ceiling(Math.Log10(hi)); e++)
                if (Math.Pow(10, e) >= lo * 0.999 && Math.Pow(10, e) <= hi * 1.001) powers.Add(Math.Pow(10, e));
            return powers.Count >= 2 ? [.. powers] : [lo, hi];
        }
        double raw = (hi - lo) / 5, magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1.0, 2, 5, 10 }.Select(m => m * magnitude).First(s => s >= raw);
        var ticks = new List<double>();
        for (double t = Math.Ceiling(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.Add(Math.Abs(t) < step * 1e-9 ? 0 : t);
        return [.. ticks];
    }

    /// <summary>
    /// A line or scatter chart; on a log axis, points with a value ≤ 0 are left out. <paramref name="xLabels"/>, when given,
    /// replace the x axis's numeric ticks (e.g. a text's characters at their positions).
    /// </summary>
    public static string Chart(string title, string xName, string yName, IReadOnlyList<Series> series, bool logX = false, bool logY = false,
        int width = 720, int height = 420, IReadOnlyList<(int Index, string Text)>? xLabels = null)
    {
        var kept = series.Select(s => s with { Points = s.Points.Where(p => (!logX || p.X > 0) && (!logY || p.Y > 0) && double.IsFinite(p.Y)).ToList() }).ToList();
        var all = kept.SelectMany(s => s.Points).ToList();
        if (all.Count == 0) all = [(1, 1)];
        (double lo, double hi) Range(IEnumerable<double> v, bool log)
        {
            double a = v.Min(), b = v.Max();
            if (b - a < 1e-12 * Math.Max(1, Math.Abs(a))) (a, b) = log ? (a / 2, b * 2) : (a - 1, b + 1);
            if (!log && a > 0 && a < 0.25 * b) a = 0;
            return (a, b);
        }
        var (x0, x1) = Range(all.Select(p => p.X), logX);
        var (y0, y1) = Range(all.Select(p => p.Y), logY);
        double T(double v, bool log) => log ? Math.Log10(v) : v;
        double px(double x) => Left + (width - Left - Right) * (T(x, logX) - T(x0, logX)) / (T(x1, logX) - T(x0, logX));
        double py(double y) => height - Bottom - (height - Top - Bottom) * (T(y, logY) - T(y0, logY)) / (T(y1, logY) - T(y0, logY));

        var svg = Begin(width, height, title);
        Axes(svg, width, height, xName, yName);
        foreach (var (at, text) in xLabels ?? [])
            svg.AppendLine($"<text x=\"{F(px(at))}\" y=\"{height - Bottom + 16}\" text-anchor=\"middle\">{Escape(text)}</text>");
        foreach (double t in xLabels is null ? Ticks(x0, x1, logX) : [])
            svg.AppendLine($"<line x1=\"{F(px(t))}\" x2=\"{F(px(t))}\" y1=\"{height - Bottom}\" y2=\"{height - Bottom + 5}\" stroke=\"black\"/><text x=\"{F(px(t))}\" y=\"{height - Bottom + 18}\" text-anchor=\"middle\">{Tick(t)}</text>");
        foreach (double t in Ticks(y0, y1, logY))
            svg.AppendLine($"<line x1=\"{Left - 5}\" x2=\"{width - Right}\" y1=\"{F(py(t))}\" y2=\"{F(py(t))}\" stroke=\"#e4e4e4\"/><text x=\"{Left - 8}\" y=\"{F(py(t) + 4)}\" text-anchor=\"end\">{Tick(t)}</text>");
        for (int i = 0; i < kept.Count; i++)
        {
            var s = kept[i];
            string points = string.Join(' ', s.Points.Select(p => $"{F(px(p.X))},{F(py(p.Y))}"));
            if (s.Line) svg.AppendLine($"<polyline fill=\"none\" stroke=\"{s.Color}\" stroke-width=\"1.6\" points=\"{points}\"/>");
            if (s.Markers)
                foreach (var p in s.Points) svg.AppendLine($"<circle cx=\"{F(px(p.X))}\" cy=\"{F(py(p.Y))}\" r=\"2.5\" fill=\"{s.Color}\"/>");
            // The legend, top right, on a white halo so that it stays readable over the data.
            svg.AppendLine($"<text x=\"{width - Right - 6}\" y=\"{Top + 16 + 16 * i}\" text-anchor=\"end\" fill=\"{s.Color}\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">{Escape(s.Name)}</text>");
        }
        return End(svg);
    }

    /// <summary>
    /// A heatmap of values [rows, cols] between lo and hi (colour scale at the right), rows top to bottom. Row and column
    /// labels are (index, text) pairs at cell centres; separators are column or row indices where a line is drawn (before
    /// that index), e.g. head boundaries.
    /// </summary>
    public static string Heatmap(string title, string xName, string yName, float[] values, int rows, int cols, float lo, float hi,
        Func<float, (byte R, byte G, byte B)> color, IReadOnlyList<(int Index, string Text)> columnLabels, IReadOnlyList<(int Index, string Text)> rowLabels,
        IReadOnlyList<int>? columnSeparators = null, IReadOnlyList<int>? rowSeparators = null, int width = 900, int height = 520)
    {
        const int scaleWidth = 90;
        int plotW = width - Left - Right - scaleWidth, plotH = height - Top - Bottom;
        float span = hi > lo ? hi - lo : 1;
        var normalised = values.Select(v => (v - lo) / span).ToArray();
        string png = Convert.ToBase64String(Png.Encode(normalised, rows, cols, c => color(lo < 0 ? 2 * c - 1 : c)));
        var svg = Begin(width, height, title);
        svg.AppendLine($"<image x=\"{Left}\" y=\"{Top}\" width=\"{plotW}\" height=\"{plotH}\" preserveAspectRatio=\"none\" style=\"image-rendering:pixelated\" href=\"data:image/png;base64,{png}\"/>");
        svg.AppendLine($"<rect x=\"{Left}\" y=\"{Top}\" width=\"{plotW}\" height=\"{plotH}\" fill=\"none\" stroke=\"black\"/>");
        double cx(double c) => Left + plotW * c / cols;
        double cy(double r) => Top + plotH * r / rows;
        foreach (int c in columnSeparators ?? [])
            svg.AppendLine($"<line x1=\"{F(cx(c))}\" x2=\"{F(cx(c))}\" y1=\"{Top}\" y2=\"{Top + plotH}\" stroke=\"#00a0ff\" stroke-width=\"1.5\"/>");
        foreach (int r in rowSeparators ?? [])
            svg.AppendLine($"<line x1=\"{Left}\" x2=\"{Left + plotW}\" y1=\"{F(cy(r))}\" y2=\"{F(cy(r))}\" stroke=\"#00a0ff\" stroke-width=\"1.5\"/>");
        foreach (var (c, text) in columnLabels)
            svg.AppendLine($"<text x=\"{F(cx(c + 0.5))}\" y=\"{Top + plotH + 16}\" text-anchor=\"middle\">{Escape(text)}</text>");
        foreach (var (r, text) in rowLabels)
            svg.AppendLine($"<text x=\"{Left - 6}\" y=\"{F(cy(r + 0.5) + 4)}\" text-anchor=\"end\">{Escape(text)}</text>");
        Axes(svg, width - scaleWidth, height, xName, yName, frame: false);
        // The colour scale: a gradient bar with lo, the middle and hi.
        int bx = width - Right - scaleWidth + 30;
        const int steps = 32;
        for (int i = 0; i < steps; i++)
        {
            float v = 1 - (i + 0.5f) / steps;
            var (r, g, b) = color(lo < 0 ? 2 * v - 1 : v);
            svg.AppendLine($"<rect x=\"{bx}\" y=\"{F(Top + plotH * i / (double)steps)}\" width=\"14\" height=\"{F(plotH / (double)steps + 0.5)}\" fill=\"rgb({r},{g},{b})\"/>");
        }
        svg.AppendLine($"<rect x=\"{bx}\" y=\"{Top}\" width=\"14\" height=\"{plotH}\" fill=\"none\" stroke=\"black\"/>");
        foreach (var (at, v) in new[] { (0.0, hi), (0.5, (lo + hi) / 2), (1.0, lo) })
            svg.AppendLine($"<text x=\"{bx + 18}\" y=\"{F(Top + plotH * at + 4)}\">{Tick(v)}</text>");
        return End(svg);
    }

    /// <summary>Evenly spaced labels, at most <paramref name="count"/>, for an axis of <paramref name="length"/> cells.</summary>
    public static List<(int Index, string Text)> IndexLabels(int length, int count = 8)
    {
        int step = Math.Max(1, (int)Math.Ceiling(length / (double)count));
        return Enumerable.Range(0, length).Where(i => i % step == 0).Select(i => (i, i.ToString(CultureInfo.InvariantCulture))).ToList();
    }

    /// <summary>Byte tokens as axis labels, one character each: newline and space made visible, bytes past ASCII as '·'.</summary>
    public static List<(int Index, string Text)> TokenLabels(IReadOnlyList<int> tokens) =>
        tokens.Select((t, i) => (i, t switch { '\n' => "⏎", ' ' => "␣", < 32 or > 126 => "·", _ => ((char)t).ToString() })).ToList();

    private static StringBuilder Begin(int width, int height, string title)
    {
        var svg = new StringBuilder();
        svg.AppendLine($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">");
        svg.AppendLine($"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>");
        svg.AppendLine($"<text x=\"{width / 2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{Escape(title)}</text>");
        return svg;
    }

    private static void Axes(StringBuilder svg, int width, int height, string xName, string yName, bool frame = true)
    {
        if (frame)
            svg.AppendLine($"<polyline fill=\"none\" stroke=\"black\" points=\"{Left},{Top} {Left},{height - Bottom} {width - Right},{height - Bottom}\"/>");
        svg.AppendLine($"<text x=\"{(Left + width - Right) / 2}\" y=\"{height - 10}\" text-anchor=\"middle\">{Escape(xName)}</text>");
        svg.AppendLine($"<text transform=\"translate(16,{(Top + height - Bottom) / 2}) rotate(-90)\" text-anchor=\"middle\">{Escape(yName)}</text>");
    }

    private static string End(StringBuilder svg) => svg.AppendLine("</svg>").ToString();

    private static string Escape(string text) => WebUtility.HtmlEncode(text);
}
