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
            WritePictures(report, model.Config, dir);
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

    private static void WritePictures(InspectionReport report, Bdh.Model.BdhConfig c, string dir)
    {
        int width = c.NHead * c.N, scale = Math.Max(1, 256 / report.Tokens);
        for (int l = 0; l < c.NLayer; l++)
        {
            // xs: one row per token, neurons of all heads side by side, scaled by the layer's max.
            float max = Math.Max(report.XsMaps[l].Max(), 1e-12f);
            Png.WriteHeatmap(Path.Combine(dir, $"xs-layer{l}.png"), report.XsMaps[l].Select(v => v / max).ToArray(), report.Tokens, width, Png.Heat, scale);
            // rho of head 0: one row per neuron, one column per embedding dim.
            var rho = report.State.Rho[l].AsSpan(0, c.N * c.NEmbd).ToArray();
            float m = Math.Max(rho.Max(Math.Abs), 1e-12f);
            Png.WriteHeatmap(Path.Combine(dir, $"rho-layer{l}-head0.png"), rho.Select(v => v / m).ToArray(), c.N, c.NEmbd, Png.Diverging);
        }
        WriteDensityChart(Path.Combine(dir, "density.svg"), report);
    }

    private static void WriteDensityChart(string path, InspectionReport report)
    {
        const int barWidth = 18, groupGap = 24, height = 220, top = 20, bottom = 40;
        int layers = report.DensityXs.Length;
        int width = 60 + layers * (3 * barWidth + groupGap);
        string[] colors = ["#1f77b4", "#ff7f0e", "#2ca02c"];
        var svg = new StringBuilder($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n");
        svg.AppendLine($"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>");
        double plot = height - top - bottom;
        for (int l = 0; l < layers; l++)
        {
            double[] values = [report.DensityXs[l], report.DensityYs[l], report.DensityXy[l]];
            int x0 = 50 + l * (3 * barWidth + groupGap);
            for (int k = 0; k < 3; k++)
            {
                double h = plot * values[k];
                svg.AppendLine(string.Create(CultureInfo.InvariantCulture,
                    $"<rect x=\"{x0 + k * barWidth}\" y=\"{top + plot - h:0.#}\" width=\"{barWidth - 2}\" height=\"{h:0.#}\" fill=\"{colors[k]}\"><title>{values[k]:P1}</title></rect>"));
            }
            svg.AppendLine($"<text x=\"{x0 + barWidth * 3 / 2}\" y=\"{height - bottom + 14}\" text-anchor=\"middle\">layer {l}</text>");
        }
        svg.AppendLine($"<text x=\"4\" y=\"{top + 4}\">100%</text><text x=\"4\" y=\"{top + plot}\">0%</text>");
        svg.AppendLine($"<text x=\"50\" y=\"{height - 8}\" fill=\"{colors[0]}\">density of xs</text><text x=\"150\" y=\"{height - 8}\" fill=\"{colors[1]}\">ys</text><text x=\"190\" y=\"{height - 8}\" fill=\"{colors[2]}\">xs*ys</text>");
        svg.AppendLine("</svg>");
        File.WriteAllText(path, svg.ToString());
    }
}
