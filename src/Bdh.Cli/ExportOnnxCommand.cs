using System.CommandLine;
using Bdh.DirectML;
using Bdh.DirectML.Onnx;

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
            if (!r.GetValue(force) && files.FirstOrDefault(f => File.Exists(Path.Combine(dir, f))) is string existing)
                throw new UserError($"--out: '{Path.Combine(dir, existing)}' exists (pass --force to replace it)");
            var model = CommonOptions.LoadModel(r.GetValue(checkpoint)!);
            OnnxExport.Export(model, dir, positions);
            foreach (var f in files)
            {
                string path = Path.Combine(dir, f);
                long bytes = new FileInfo(path).Length + (File.Exists(path + ".data") ? new FileInfo(path + ".data").Length : 0);
                Console.WriteLine($"wrote {path} ({bytes / 1e6:0.0} MB)");
            }
            Console.WriteLine($"opset {OnnxGraph.Opset}, IR {OnnxGraph.IrVersion}, sequences up to {positions} tokens; run it with: bdh sample --backend onnx --onnx {dir}");
            return 0;
        });
        return command;
    }
}
