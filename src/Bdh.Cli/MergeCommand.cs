using System.CommandLine;
using Bdh.Model.Experiments;

namespace Bdh.Cli;

/// <summary>bdh merge: two models become one with the neurons of both (the paper, §7.1).</summary>
public static class MergeCommand
{
    public static Command Create()
    {
        var a = new Argument<string>("A") { Description = "The first model: a .safetensors checkpoint or a `bdh train` folder" };
        var b = new Argument<string>("B") { Description = "The second model, with the same n_embd, n_head, n_layer and vocab_size" };
        var output = new Option<string>("--out", "-o") { Description = "The merged checkpoint (.safetensors) to write", Required = true };
        var embed = new Option<string>("--embed")
        {
            Description = "The merged embedding and output head: a (A's), b (B's) or mean (the paper's choice)",
            DefaultValueFactory = _ => "mean",
        };
        embed.AcceptOnlyFromAmong("a", "b", "mean");
        var force = new Option<bool>("--force") { Description = "Replace --out if it exists" };
        var command = new Command("merge",
            "Merge two models by concatenating their neurons (paper §7.1): every head gets N_A + N_B neurons, each keeping its weights and RoPE frequency; embedding and head are averaged.")
            { a, b, output, embed, force };
        command.SetAction(r =>
        {
            string path = r.GetValue(output)!;
            if (File.Exists(path) && !r.GetValue(force)) throw new UserError($"--out: '{path}' exists (pass --force to replace it)");
            if (Directory.Exists(path)) throw new UserError($"--out: '{path}' is a folder; name the .safetensors file to write");
            var modelA = CommonOptions.LoadModel(r.GetValue(a)!, "A");
            var modelB = CommonOptions.LoadModel(r.GetValue(b)!, "B");
            var choice = Enum.Parse<MergedEmbedding>(r.GetValue(embed)!, ignoreCase: true);
            var merged = ModelMerge.Merge(modelA, modelB, choice);
            // Written beside the target and moved over it, so a failed write leaves --out as it was.
            string partial = path + ".partial";
            Bdh.Model.Checkpoint.Save(merged, partial);
            File.Move(partial, path, overwrite: true);
            Console.WriteLine($"wrote {path}: N = {modelA.Config.N} + {modelB.Config.N} = {merged.Config.N} neurons per head, " +
                $"{merged.Config.NHead} heads, config {merged.Config.ToJson()}");
            return 0;
        });
        return command;
    }
}
