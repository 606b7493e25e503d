namespace Bdh.Cli;

/// <summary>The training curve as an SVG line chart: train loss per step, val loss where measured.</summary>
public static class LossCurve
{
    public static void WriteSvg(string path, IReadOnlyList<(int Step, double Train, double? Val)> points)
    {
        if (points.Count == 0) return;
        List<Series> series = [new("train loss", points.Select(p => ((double)p.Step, p.Train)).ToList(), "#1f77b4")];
        var val = points.Where(p => p.Val.HasValue).Select(p => ((double)p.Step, p.Val!.Value)).ToList();
        if (val.Count > 0) series.Add(new Series("val loss", val, "#d62728", Markers: true));
        File.WriteAllText(path, SvgPlot.Chart($"Training loss, steps 1-{points[^1].Step}", "optimizer step", "loss (cross-entropy, nats per byte)", series));
    }
}
