using System.CommandLine;
using Bdh.Model;
using Bdh.Model.Text;

namespace Bdh.Cli;

/// <summary>Options and helpers shared by several commands.</summary>
public static class CommonOptions
{
    public static Option<string> Checkpoint() => new("--checkpoint", "-c")
    {
        Description = "A .safetensors model, or a `bdh train` output folder (its latest checkpoint)",
        Required = true,
    };

    public static Option<int?> Threads() => new("--threads") { Description = "Threads for the kernels (default: all cores)" };

    public static void ApplyThreads(int? threads)
    {
        if (threads is int t)
            Bdh.Tensors.Parallelism.Threads = t >= 1 ? t : throw new UserError("--threads: must be >= 1");
    }

    /// <summary>The model a path names; <paramref name="argument"/> is how errors name the option or argument it came from.</summary>
    public static BdhModel<float> LoadModel(string path, string argument = "--checkpoint")
    {
        string file;
        try { file = Bdh.Model.Checkpoint.Find(path); }
        catch (FileNotFoundException e) { throw new UserError($"{argument}: {e.Message}"); }
        return Bdh.Model.Checkpoint.Load(file);
    }

    /// <summary>How the experiments write their JSON summaries: snake_case names (as the config's), indented, NaN allowed.</summary>
    public static readonly System.Text.Json.JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Text as byte tokens (the vocabulary is the 256 byte values).</summary>
    public static int[] Encode(string text) => ByteTokens.Encode(text);

    public static string Decode(IEnumerable<int> tokens) => ByteTokens.Decode(tokens);
}
