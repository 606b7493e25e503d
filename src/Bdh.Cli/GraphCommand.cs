using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Bdh.Model.Experiments;

namespace Bdh.Cli;

/// <summary>bdh graph: the neuron interaction network of each head (paper §5.5), its degrees, communities and pictures.</summary>
public static class GraphCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        var outDir = new Option<string>("--out", "-o") { Description = "Folder for graph.json and the pictures", Required = true };
        var beta = new Option<double>("--beta") { Description = "Edges are entries of G_h >= beta * sigma (sigma: std of G_h's entries); the paper's ~1.2", DefaultValueFactory = _ => 1.2 };
        var sweep = new Option<string>("--sweep") { Description = "Comma-separated betas for the modularity sweep", DefaultValueFactory = _ => "0.5,0.8,1,1.2,1.6,2,3" };
        var seeds = new Option<int>("--seeds") { Description = "Louvain runs per graph (the best is kept)", DefaultValueFactory = _ => 5 };
        var read = new Option<string>("--read")
        {
            Description = "Which encoder reads the decoder's output: encoder (G = decoder*encoder, the paper's G_x) or encoder_v (G_y)",
            DefaultValueFactory = _ => "encoder",
        };
        read.AcceptOnlyFromAmong("encoder", "encoder_v");
        var communities = new Option<int>("--communities") { Description = "How many of the largest communities the adjacency picture shows", DefaultValueFactory = _ => 6 };
        var force = new Option<bool>("--force") { Description = "Replace a graph.json already in --out" };
        var threads = CommonOptions.Threads();
        var command = new Command("graph",
            "The neuron interaction network of each head (paper §5.5): G_h = decoder_h * encoder_h cut at beta * sigma; degree distributions with " +
            "power-law fits, Louvain modularity against a shuffled baseline, a sweep over beta; pictures and graph.json.")
            { checkpoint, outDir, beta, sweep, seeds, read, communities, force, threads };
        command.SetAction(r =>
        {
            CommonOptions.ApplyThreads(r.GetValue(threads));
            double b = r.GetValue(beta);
            if (!(b > 0)) throw new UserError("--beta: must be > 0");
            double[] betas = ParseBetas(r.GetValue(sweep)!);
            if (r.GetValue(seeds) < 1) throw new UserError("--seeds: must be >= 1");
            if (r.GetValue(communities) < 1) throw new UserError("--communities: must be >= 1");
            string dir = r.GetValue(outDir)!;
            CommonOptions.RequireFolder(dir, "--out");
            string json = Path.Combine(dir, "graph.json");
            if (File.Exists(json) && !r.GetValue(force)) throw new UserError($"--out: '{json}' exists (pass --force to replace it)");
            string source = r.GetValue(checkpoint)!;
            var model = CommonOptions.LoadModel(source);
            Directory.CreateDirectory(dir);
            var report = Run(model, b, betas, r.GetValue(seeds), r.GetValue(read) == "encoder_v", r.GetValue(communities), dir);
            File.WriteAllText(json, JsonSerializer.Serialize(new { checkpoint = source, config = model.Config, read = r.GetValue(read), report.Heads, report.Sweep },
                CommonOptions.Json));
            Console.Error.WriteLine($"graph.json and pictures in {Path.GetFullPath(dir)}");
            return 0;
        });
        return command;
    }

    private static double[] ParseBetas(string text)
    {
        var betas = new List<double>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            betas.Add(double.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v > 0
                ? v : throw new UserError($"--sweep: '{part}' is not a number > 0"));
        return betas.Count > 0 ? [.. betas.Order()] : throw new UserError("--sweep: give at least one beta");
    }

    public sealed record FitSummary(double Alpha, int KMin, int Tail, double Ks, double LogLikelihoodRatio, double Vuong, double P);
    public sealed record HeadSummary(int Head, double Beta, double Threshold, int Edges, double Modularity, double ShuffledModularity,
        int Communities, int[] LargestCommunities, double MeanDegree, int MaxInDegree, int MaxOutDegree, FitSummary? InDegreeFit, FitSummary? OutDegreeFit);
    public sealed record SweepPoint(int Head, double Beta, int Edges, double Modularity, double ShuffledModularity);

    private static FitSummary? Summary(PowerLawFit? f) =>
        f is null ? null : new FitSummary(f.Alpha, f.KMin, f.TailCount, f.KsDistance, f.LogLikelihoodRatio, f.Vuong, f.PValue);

    private static (List<HeadSummary> Heads, List<SweepPoint> Sweep) Run(Bdh.Model.BdhModel<float> model, double beta, double[] betas, int seeds,
        bool encoderV, int shownCommunities, string dir)
    {
        int n = model.Config.N;
        var heads = new List<HeadSummary>();
        var sweep = new List<SweepPoint>();
        string[] colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
        Console.WriteLine($"head  beta  edges    modularity  shuffled  communities (largest)         in-degree alpha (k_min, R, p)      out-degree alpha (k_min, R, p)");
        for (int h = 0; h < model.Config.NHead; h++)
        {
            float[] g = NeuronGraph.Interaction(model, h, encoderV);
            var graph = NeuronGraph.Analyse(g, n, h, beta, seeds);
            var s = new HeadSummary(h, beta, graph.Threshold, graph.Edges, graph.Modularity, graph.ShuffledModularity, graph.CommunitySizes.Length,
                graph.CommunitySizes.Take(8).ToArray(), graph.Edges / (double)n, graph.InDegrees.Max(), graph.OutDegrees.Max(),
                Summary(graph.InFit), Summary(graph.OutFit));
            heads.Add(s);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{h,4}  {beta,4:0.##}  {graph.Edges,7}  {graph.Modularity,10:0.000}  {graph.ShuffledModularity,8:0.000}  {graph.CommunitySizes.Length,4} ({string.Join(",", graph.CommunitySizes.Take(5))}){"",-8}  {Fit(graph.InFit),-32}  {Fit(graph.OutFit)}"));
            foreach (double b in betas)
            {
                var point = b == beta ? graph : NeuronGraph.Analyse(g, n, h, b, seeds);
                sweep.Add(new SweepPoint(h, b, point.Edges, point.Modularity, point.ShuffledModularity));
            }
            WriteDegrees(Path.Combine(dir, $"degrees-head{h}.svg"), graph);
            WriteCommunities(Path.Combine(dir, $"communities-head{h}.svg"), graph, g, n, shownCommunities);
        }
        var series = new List<Series>();
        for (int h = 0; h < model.Config.NHead; h++)
        {
            var points = sweep.Where(p => p.Head == h).ToList();
            series.Add(new Series($"head {h}", points.Select(p => (p.Beta, p.Modularity)).ToList(), colors[h % colors.Length], Markers: true));
            series.Add(new Series($"head {h}, entries shuffled", points.Select(p => (p.Beta, p.ShuffledModularity)).ToList(), colors[h % colors.Length], Markers: true, Line: false));
        }
        File.WriteAllText(Path.Combine(dir, "modularity.svg"), SvgPlot.Chart(
            $"Louvain modularity of G_h >= beta*sigma (best of {seeds} seeds; dots alone: shuffled baseline)", "beta (threshold in standard deviations of G_h)", "modularity Q", series));
        return (heads, sweep);
    }

    private static string Fit(PowerLawFit? f) => f is null ? "n/a (too few degrees)" :
        string.Create(CultureInfo.InvariantCulture, $"{f.Alpha:0.00} ({f.KMin}, {f.LogLikelihoodRatio:0.0}, {f.PValue:0.0e+0})");

    /// <summary>Log-log: how many neurons have in- (out-) degree k, for k ≥ 1, with each fitted power law over its tail.</summary>
    private static void WriteDegrees(string path, HeadGraph graph)
    {
        var series = new List<Series>();
        foreach (var (name, degrees, fit, color) in new[] { ("in-degree", graph.InDegrees, graph.InFit, "#1f77b4"), ("out-degree", graph.OutDegrees, graph.OutFit, "#d62728") })
        {
            var counts = degrees.Where(k => k > 0).GroupBy(k => k).OrderBy(grp => grp.Key).Select(grp => ((double)grp.Key, (double)grp.Count())).ToList();
            series.Add(new Series(name, counts, color, Markers: true, Line: false));
            if (fit is null) continue;
            // The fit's expected counts: tail size × k^−α / ζ(α, k_min).
            double zeta = PowerLawFit.HurwitzZeta(fit.Alpha, fit.KMin);
            var line = counts.Where(c => c.Item1 >= fit.KMin).Select(c => (c.Item1, fit.TailCount * Math.Pow(c.Item1, -fit.Alpha) / zeta)).ToList();
            series.Add(new Series(string.Create(CultureInfo.InvariantCulture, $"{name} power law, alpha {fit.Alpha:0.00}, k >= {fit.KMin}"), line, color));
        }
        File.WriteAllText(path, SvgPlot.Chart(
            string.Create(CultureInfo.InvariantCulture, $"Head {graph.Head}: degree distributions of G >= {graph.Beta:0.##} sigma ({graph.Edges} edges)"),
            "degree k", "neurons with degree k", series, logX: true, logY: true));
    }

    /// <summary>The adjacency (edges of G ≥ β·σ) among the neurons of the largest communities, grouped by community.</summary>
    private static void WriteCommunities(string path, HeadGraph graph, float[] g, int n, int shown)
    {
        var nodes = Enumerable.Range(0, n).Where(i => graph.Community[i] < shown).OrderBy(i => graph.Community[i]).ThenBy(i => i).Take(600).ToArray();
        int count = nodes.Length;
        var cells = new float[count * count];
        for (int a = 0; a < count; a++)
            for (int b = 0; b < count; b++)
                cells[a * count + b] = nodes[a] != nodes[b] && g[nodes[a] * n + nodes[b]] >= graph.Threshold ? 1 : 0;
        var boundaries = Enumerable.Range(1, count - 1).Where(a => graph.Community[nodes[a]] != graph.Community[nodes[a - 1]]).ToList();
        var labels = new List<(int, string)>();
        for (int a = 0; a < count; a++)
            if (a == 0 || boundaries.Contains(a)) labels.Add((a, $"c{graph.Community[nodes[a]]}"));
        File.WriteAllText(path, SvgPlot.Heatmap(
            $"Head {graph.Head}: edges among the {Math.Min(shown, graph.CommunitySizes.Length)} largest communities ({count} neurons)",
            "reading neuron j (grouped by community)", "writing neuron i", cells, count, count, 0, 1, Png.Heat, labels, labels, boundaries, boundaries, width: 760, height: 700));
    }
}
