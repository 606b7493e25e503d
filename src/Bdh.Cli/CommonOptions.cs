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
        InputFile.Require(file, argument);
        return Bdh.Model.Checkpoint.Load(file);
    }

    /// <summary>Throws unless <paramref name="path"/> can be a folder to write into (it may not exist yet).</summary>
    public static void RequireFolder(string path, string flag)
    {
        if (File.Exists(path)) throw new UserError($"{flag}: '{path}' is a file, not a folder");
    }

    /// <summary>Throws unless a file can be written at <paramref name="path"/>: not a folder, in a folder that exists.</summary>
    public static void RequireWritableFile(string path, string flag)
    {
        if (Directory.Exists(path)) throw new UserError($"{flag}: '{path}' is a folder, not a file");
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(folder)) throw new UserError($"{flag}: no folder '{folder}' to write '{Path.GetFileName(path)}' into");
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
