using System.Globalization;
using System.Text;

namespace Bdh.Cli;

/// <summary>The training curve as an SVG line chart: train loss per step, val loss where measured.</summary>
public static class LossCurve
{
    public static void WriteSvg(string path, IReadOnlyList<(int Step, double Train, double? Val)> points)
    {
        const int width = 720, height = 400, left = 60, right = 20, top = 20, bottom = 40;
        if (points.Count == 0) return;
        int maxStep = Math.Max(1, points[^1].Step);
        double lo = points.Min(p => Math.Min(p.Train, p.Val ?? p.Train)), hi = points.Max(p => Math.Max(p.Train, p.Val ?? p.Train));
        if (hi - lo < 1e-9) hi = lo + 1;
        string X(double step) => (left + (width - left - right) * step / maxStep).ToString("0.#", CultureInfo.InvariantCulture);
        string Y(double loss) => (top + (height - top - bottom) * (hi - loss) / (hi - lo)).ToString("0.#", CultureInfo.InvariantCulture);

        var svg = new StringBuilder();
        svg.AppendLine($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">");
        svg.AppendLine($"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>");
        for (int i = 0; i <= 4; i++)
        {
            double loss = lo + (hi - lo) * i / 4;
            svg.AppendLine($"<line x1=\"{left}\" x2=\"{width - right}\" y1=\"{Y(loss)}\" y2=\"{Y(loss)}\" stroke=\"#ddd\"/><text x=\"{left - 6}\" y=\"{Y(loss)}\" text-anchor=\"end\">{loss.ToString("0.00", CultureInfo.InvariantCulture)}</text>");
        }
        svg.AppendLine($"<text x=\"{width / 2}\" y=\"{height - 8}\" text-anchor=\"middle\">step (last {maxStep})</text>");
        svg.AppendLine($"<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{string.Join(' ', points.Select(p => $"{X(p.Step)},{Y(p.Train)}"))}\"/>");
        var val = points.Where(p => p.Val.HasValue).ToList();
        if (val.Count > 0)
            svg.AppendLine($"<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"{string.Join(' ', val.Select(p => $"{X(p.Step)},{Y(p.Val!.Value)}"))}\"/>");
        svg.AppendLine($"<text x=\"{width - right - 150}\" y=\"{top + 14}\" fill=\"#1f77b4\">train loss</text><text x=\"{width - right - 70}\" y=\"{top + 14}\" fill=\"#d62728\">val loss</text>");
        svg.AppendLine("</svg>");
        File.WriteAllText(path, svg.ToString());
    }
}
