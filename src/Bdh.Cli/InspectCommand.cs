using System.CommandLine;
using System.Globalization;
using System.Text;
using Bdh.Model;
using Bdh.Model.Inference;

namespace Bdh.Cli;

/// <summary>bdh inspect: sparsity, most active neurons and strongest synapses for a prompt, with pictures.</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        var prompt = new Option<string>("--prompt", "-p") { Description = "Text to read", Required = true };
        var outDir = new Option<string>("--out") { Description = "Folder for the pictures", DefaultValueFactory = _ => "inspect" };
        var top = new Option<int>("--top") { Description = "How many neurons and synapses to list", DefaultValueFactory = _ => 10 };
        var threads = CommonOptions.Threads();
        var command = new Command("inspect", "Show what BDH does while reading a prompt: activation sparsity per layer, its most active neurons, the strongest synapses of its state.")
        {
            checkpoint, prompt, outDir, top, threads,
        };
        command.SetAction(r =>
        {
            CommonOptions.ApplyThreads(r.GetValue(threads));
            string text = r.GetValue(prompt)!;
            if (text.Length == 0) throw new UserError("--prompt: must not be empty");
            if (r.GetValue(top) < 1) throw new UserError("--top: must be >= 1");
            string dir = r.GetValue(outDir)!;
            CommonOptions.RequireFolder(dir, "--out");
            var model = CommonOptions.LoadModel(r.GetValue(checkpoint)!);
            int tokens = CommonOptions.Encode(text).Length;
            model.Config.RequireStepFits(1, tokens, training: false, "--prompt");
            MemoryBudget.Require(model.Config.StepBytes(1, tokens, training: false) + model.Config.StateBytes, "--prompt");
            var report = InspectionReport.Run(model, CommonOptions.Encode(text), r.GetValue(top));
            Directory.CreateDirectory(dir);
            WritePictures(report, model.Config, text, dir);
            Console.Write(Summary(report));
            Console.Error.WriteLine($"pictures in {Path.GetFullPath(dir)}");
            return 0;
        });
        return command;
    }

    public static string Summary(InspectionReport report)
    {
        var s = new StringBuilder();
        s.AppendLine($"{report.Tokens} tokens read");
        s.AppendLine("layer   density xs   density ys   density xs*ys   (fraction of neurons > 0; all activations are >= 0)");
        for (int l = 0; l < report.DensityXs.Length; l++)
            s.AppendLine(string.Create(CultureInfo.InvariantCulture, $"{l,5}   {report.DensityXs[l],10:P1}   {report.DensityYs[l],10:P1}   {report.DensityXy[l],13:P1}"));
        s.AppendLine("most active neurons (layer/head/neuron: summed activation, fraction of tokens firing)");
        foreach (var a in report.TopNeurons)
            s.AppendLine(string.Create(CultureInfo.InvariantCulture, $"  {a.Layer}/{a.Head}/{a.Neuron,-6} {a.Total,10:0.000}  {a.FiringFraction,6:P0}"));
        s.AppendLine("strongest synapses of rho after reading (layer/head/neuron -> dim: weight)");
        foreach (var syn in report.StrongestSynapses)
            s.AppendLine(string.Create(CultureInfo.InvariantCulture, $"  {syn.Layer}/{syn.Head}/{syn.Neuron,-6} -> {syn.Dim,-4} {syn.Weight,10:0.0000}"));
        return s.ToString();
    }

    private static void WritePictures(InspectionReport report, Bdh.Model.BdhConfig c, string prompt, string dir)
    {
        int neurons = c.NHead * c.N;
        var heads = Enumerable.Range(0, c.NHead).Select(h => (h * c.N + c.N / 2, $"head {h}")).ToList();      // labels at each head's middle
        var boundaries = Enumerable.Range(1, c.NHead - 1).Select(h => h * c.N).ToList();
        var tokens = SvgPlot.TokenLabels(CommonOptions.Encode(prompt));
        for (int l = 0; l < c.NLayer; l++)
        {
            // xs: one row per token, neurons of all heads side by side.
            float max = Math.Max(report.XsMaps[l].Max(), 1e-12f);
            File.WriteAllText(Path.Combine(dir, $"xs-layer{l}.svg"), SvgPlot.Heatmap(
                $"Layer {l}: neuron activations xs while reading the prompt", $"neuron ({c.NHead} heads of N = {c.N}, side by side)", "token",
                report.XsMaps[l], report.Tokens, neurons, 0, max, Png.Heat, heads, tokens, columnSeparators: boundaries));
            // rho of head 0: one row per neuron, one column per embedding dim, on a scale symmetric about 0.
            var rho = report.State.Rho[l].AsSpan(0, c.N * c.NEmbd).ToArray();
            float m = Math.Max(rho.Max(Math.Abs), 1e-12f);
            File.WriteAllText(Path.Combine(dir, $"rho-layer{l}-head0.svg"), SvgPlot.Heatmap(
                $"Layer {l}, head 0: synaptic state rho after the prompt", "embedding dimension", "neuron",
                rho, c.N, c.NEmbd, -m, m, Png.Diverging, SvgPlot.IndexLabels(c.NEmbd), SvgPlot.IndexLabels(c.N, 10), height: 640));
        }
        var layers = Enumerable.Range(0, c.NLayer).Select(l => (double)l).ToList();
        List<Series> densities =
        [
            new("xs", layers.Select(l => (l, report.DensityXs[(int)l])).ToList(), "#1f77b4", Markers: true),
            new("ys", layers.Select(l => (l, report.DensityYs[(int)l])).ToList(), "#ff7f0e", Markers: true),
            new("xs*ys", layers.Select(l => (l, report.DensityXy[(int)l])).ToList(), "#2ca02c", Markers: true),
        ];
        File.WriteAllText(Path.Combine(dir, "density.svg"),
            SvgPlot.Chart($"Activation density per layer ({report.Tokens} tokens)", "layer", "fraction of neurons > 0", densities));
    }
}
