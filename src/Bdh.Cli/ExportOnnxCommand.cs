using System.CommandLine;
using Bdh.DirectML;
using Bdh.Model;

namespace Bdh.Cli;

/// <summary>bdh export-onnx: prefill.onnx and step.onnx for ONNX Runtime (DirectML on Windows, CPU anywhere).</summary>
public static class ExportOnnxCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        var output = new Option<string>("--out", "-o") { Description = "Folder for prefill.onnx and step.onnx", Required = true };
        var maxPositions = new Option<int>("--max-positions")
        {
            Description = "Longest sequence (prompt + generated tokens) the RoPE tables in the export cover",
            DefaultValueFactory = _ => 2048,
        };
        var force = new Option<bool>("--force") { Description = "Replace an export already in --out" };
        var command = new Command("export-onnx", "Export a checkpoint as ONNX graphs (opset 17) for GPU inference through DirectML.")
            { checkpoint, output, maxPositions, force };
        command.SetAction(r =>
        {
            string dir = r.GetValue(output)!;
            int positions = r.GetValue(maxPositions);
            if (positions < 1) throw new UserError("--max-positions: must be >= 1");
            string[] files = [OnnxExport.PrefillFile, OnnxExport.StepFile];
            CommonOptions.RequireFolder(dir, "--out");
            // The export is staged beside the folder (ExportWhole), so the folder needs a parent.
            if (Path.GetDirectoryName(Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar)) is null)
                throw new UserError($"--out: '{dir}' is a root folder; export into a folder inside it");
            if (!r.GetValue(force) && files.FirstOrDefault(f => File.Exists(Path.Combine(dir, f))) is string existing)
                throw new UserError($"--out: '{Path.Combine(dir, existing)}' exists (pass --force to replace it)");
            var model = CommonOptions.LoadModel(r.GetValue(checkpoint)!);
            // RoPE tables: cos and sin [P, N] while they are made, then halves [P, N/2] in the graphs.
            long tableValues = (long)positions * model.Config.N;
            if (OnnxExport.RopeTableBytes(model.Config, positions) > Array.MaxLength)
                throw new UserError($"--max-positions: {positions} positions x N = {model.Config.N} neurons make RoPE tables of {OnnxExport.RopeTableBytes(model.Config, positions)} bytes, more than one array holds ({Array.MaxLength})");
            // Beside them the weights, three times: the model's, and a copy of each in both graphs.
            MemoryBudget.Require(4.0 * 4 * tableValues + 4.0 * 3 * BdhModel<float>.ParameterCount(model.Config), "--max-positions");
            ExportWhole(model, dir, positions);
            foreach (var f in files)
            {
                string path = Path.Combine(dir, f);
                long bytes = new FileInfo(path).Length + (File.Exists(path + ".data") ? new FileInfo(path + ".data").Length : 0);
                Console.WriteLine($"wrote {path} ({bytes / 1e6:0.0} MB)");
            }
            Console.WriteLine($"opset {OnnxExport.Opset}, IR {OnnxExport.IrVersion}, sequences up to {positions} tokens; run it with: bdh sample --backend onnx --onnx {dir}");
            return 0;
        });
        return command;
    }

    /// <summary>
    /// Writes the export into a temporary folder beside <paramref name="dir"/> and swaps it in whole: the old export's
    /// files move aside, the new ones move in, and a failure on the way moves the old ones back, so the folder holds
    /// one export or the other, never half of each (an old step.onnx.data never outlives its graph either).
    /// </summary>
    private static void ExportWhole(BdhModel<float> model, string dir, int positions)
    {
        string full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar);
        string temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.export-{Environment.ProcessId}.tmp");
        string aside = temp + ".old";
        string[] names = [OnnxExport.PrefillFile, OnnxExport.PrefillFile + ".data", OnnxExport.StepFile, OnnxExport.StepFile + ".data"];
        var setAside = new List<string>();
        var placed = new List<string>();
        try
        {
            OnnxExport.Export(model, temp, positions);
            Directory.CreateDirectory(dir);
            Directory.CreateDirectory(aside);
            try
            {
                foreach (var name in names.Where(n => File.Exists(Path.Combine(dir, n))))
                {
                    File.Move(Path.Combine(dir, name), Path.Combine(aside, name));
                    setAside.Add(name);
                }
                foreach (var name in names.Where(n => File.Exists(Path.Combine(temp, n))))
                {
                    File.Move(Path.Combine(temp, name), Path.Combine(dir, name));
                    placed.Add(name);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                foreach (var name in placed) File.Delete(Path.Combine(dir, name));
                foreach (var name in setAside) File.Move(Path.Combine(aside, name), Path.Combine(dir, name));
                throw new UserError($"--out: could not move the new export into '{dir}' ({e.Message}); the export that was there is kept as it was");
            }
        }
        finally
        {
            foreach (var folder in new[] { temp, aside })
                if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }
}
