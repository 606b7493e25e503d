using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Bdh.Model;
using Bdh.Model.Experiments;

namespace Bdh.Cli;

/// <summary>bdh synapses: the synapses whose value separates texts that mention a concept from texts that do not (paper §6.3).</summary>
public static class SynapsesCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        var with = new Option<string>("--with") { Description = "Texts that mention the concept, one per line", Required = true };
        var without = new Option<string>("--without") { Description = "Texts that do not, one per line", Required = true };
        var outDir = new Option<string>("--out", "-o") { Description = "Folder for synapses.json and the pictures", Required = true };
        var top = new Option<int>("--top") { Description = "Synapses reported per layer", DefaultValueFactory = _ => 5 };
        var force = new Option<bool>("--force") { Description = "Replace a synapses.json already in --out" };
        var threads = CommonOptions.Threads();
        var command = new Command("synapses",
            "Find monosemantic synapses (paper §6.3): for every synapse sigma_l[i, j] = sum over tokens of y_{l-1}[i] x_l[j] (per head), a Mann-Whitney " +
            "test of its value after the --with texts against the --without texts; the top synapses per layer, the words that strengthen them, pictures.")
            { checkpoint, with, without, outDir, top, force, threads };
        command.SetAction(r =>
        {
            CommonOptions.ApplyThreads(r.GetValue(threads));
            if (r.GetValue(top) < 1) throw new UserError("--top: must be >= 1");
            var withTexts = ReadTexts(r.GetValue(with)!, "--with");
            var withoutTexts = ReadTexts(r.GetValue(without)!, "--without");
            string dir = r.GetValue(outDir)!;
            CommonOptions.RequireFolder(dir, "--out");
            string json = Path.Combine(dir, "synapses.json");
            if (File.Exists(json) && !r.GetValue(force)) throw new UserError($"--out: '{json}' exists (pass --force to replace it)");
            var model = CommonOptions.LoadModel(r.GetValue(checkpoint)!);
            if (model.Config.NLayer < 2) throw new UserError("--checkpoint: synapses join consecutive layers; the model has only one");
            var withActs = withTexts.Select(t => SynapseSearch.Read(model, CommonOptions.Encode(t))).ToList();
            var withoutActs = withoutTexts.Select(t => SynapseSearch.Read(model, CommonOptions.Encode(t))).ToList();
            int n = model.Config.N;
            var results = SynapseSearch.Search(withActs, withoutActs, model.Config.NHead, n, r.GetValue(top));
            Directory.CreateDirectory(dir);

            var report = new List<object>();
            var s = new StringBuilder();
            long tested = (long)(model.Config.NLayer - 1) * model.Config.NHead * n * n;
            s.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"{withTexts.Count} texts with, {withoutTexts.Count} without; {tested:N0} synapses tested (p corrected by that count)"));
            s.AppendLine("layer head  i -> j        U of n1*n0     r      p        corrected p   mean with / without   words that strengthen it most");
            foreach (var result in results)
            {
                var words = StrongestWords(withTexts, withActs, result, n);
                s.AppendLine(string.Create(CultureInfo.InvariantCulture,
                    $"{result.Layer,5} {result.Head,4}  {result.From,5} -> {result.To,-5}  {result.Test.U,6:0.#} of {withTexts.Count * withoutTexts.Count,-5}  {result.Test.RankBiserial,5:0.00}  {result.Test.PValue,8:0.0e+0}  {result.CorrectedP,8:0.0e+0}      {result.MeanWith,8:0.###} / {result.MeanWithout,-8:0.###}  {string.Join(", ", words.Select(w => w.Word))}"));
                report.Add(new
                {
                    result.Layer, result.Head, result.From, result.To, result.Test.U, Pairs = withTexts.Count * withoutTexts.Count,
                    result.Test.RankBiserial, P = result.Test.PValue, result.CorrectedP, result.MeanWith, result.MeanWithout,
                    Words = words.Select(w => new { w.Word, w.Added }).ToArray(),
                });
            }
            foreach (var layerBest in results.GroupBy(x => x.Layer).Select(g => g.First()))
                WriteAlong(Path.Combine(dir, $"synapse-layer{layerBest.Layer}.svg"), layerBest, withTexts, withActs, withoutTexts, withoutActs, n);
            File.WriteAllText(json, JsonSerializer.Serialize(new { checkpoint = r.GetValue(checkpoint), with = withTexts.Count, without = withoutTexts.Count, tested, synapses = report },
                CommonOptions.Json));
            Console.Write(s.ToString());
            Console.Error.WriteLine($"synapses.json and pictures in {Path.GetFullPath(dir)}");
            return 0;
        });
        return command;
    }

    private static List<string> ReadTexts(string path, string option)
    {
        InputFile.Require(path, option);
        var lines = File.ReadAllLines(path).Where(l => l.Trim().Length > 0).ToList();
        return lines.Count >= 2 ? lines : throw new UserError($"{option}: '{path}' needs at least 2 non-empty lines (one text each), has {lines.Count}");
    }

    /// <summary>The words (runs of letters, digits and apostrophes) whose tokens added most to the synapse over the texts with the concept.</summary>
    private static List<(string Word, double Added)> StrongestWords(List<string> texts, List<TextActivations> acts, SynapseResult s, int n)
    {
        var added = new Dictionary<string, double>();
        for (int t = 0; t < texts.Count; t++)
        {
            var contributions = SynapseSearch.Contributions(acts[t], s, n);
            var bytes = CommonOptions.Encode(texts[t]);
            for (int tau = 0; tau < bytes.Length; tau++)
            {
                if (contributions[tau] == 0) continue;
                string word = WordAt(bytes, tau);
                added[word] = added.GetValueOrDefault(word) + contributions[tau];
            }
        }
        return added.OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal).Take(5).Select(p => (p.Key, p.Value)).ToList();
    }

    private static bool InWord(int b) => char.IsLetterOrDigit((char)b) || b == '\'' || b >= 128;

    /// <summary>The word around byte τ, or the character itself for spaces and punctuation.</summary>
    private static string WordAt(int[] bytes, int tau)
    {
        if (!InWord(bytes[tau])) return CommonOptions.Decode([bytes[tau]]) switch { " " => "␣", "\n" => "⏎", var c => c };
        int start = tau, end = tau + 1;
        while (start > 0 && InWord(bytes[start - 1])) start--;
        while (end < bytes.Length && InWord(bytes[end])) end++;
        return CommonOptions.Decode(bytes[start..end]);
    }

    /// <summary>The synapse's value along the with-text where it ends highest and the without-text where it ends highest.</summary>
    private static void WriteAlong(string path, SynapseResult s, List<string> withTexts, List<TextActivations> withActs,
        List<string> withoutTexts, List<TextActivations> withoutActs, int n)
    {
        (string Text, double[] Values) Highest(List<string> texts, List<TextActivations> acts) => texts.Zip(acts, (text, a) =>
        {
            double sum = 0;
            return (text, SynapseSearch.Contributions(a, s, n).Select(c => sum += c).ToArray());
        }).MaxBy(p => p.Item2[^1]);
        var (text, values) = Highest(withTexts, withActs);
        var (other, otherValues) = Highest(withoutTexts, withoutActs);
        List<Series> series =
        [
            new("with the concept (labelled below)", values.Select((v, i) => ((double)i, v)).ToList(), "#d62728", Markers: true),
            new("without: the highest such text", otherValues.Select((v, i) => ((double)i, v)).ToList(), "#7f7f7f"),
        ];
        File.WriteAllText(path, SvgPlot.Chart(
            string.Create(CultureInfo.InvariantCulture, $"Synapse layer {s.Layer}, head {s.Head}: {s.From} -> {s.To} (U = {s.Test.U:0.#}, r = {s.Test.RankBiserial:0.00})"),
            "token of the text", "synapse value sigma after the token", series, width: Math.Max(720, 9 * values.Length + 100),
            xLabels: SvgPlot.TokenLabels(CommonOptions.Encode(text))));
    }
}
