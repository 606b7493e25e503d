using System.CommandLine;
using System.Diagnostics;
using Bdh.DirectML;
using Bdh.Model;
using Bdh.Model.Inference;

namespace Bdh.Cli;

/// <summary>bdh sample: the prompt and its continuation on stdout; the rate on stderr. Managed engine or ONNX Runtime.</summary>
public static class SampleCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        checkpoint.Required = false; // the ONNX backend reads an export folder instead
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Text to continue (default \"ROMEO:\"; none after --load-state)" };
        var tokens = new Option<int>("--tokens", "-n") { Description = "Tokens (bytes) to generate", DefaultValueFactory = _ => 200 };
        var topK = new Option<int?>("--top-k") { Description = "Sample among the k most likely tokens (1 = greedy)" };
        var temperature = new Option<double>("--temperature") { Description = "Softmax temperature", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the draw", DefaultValueFactory = _ => 1337UL };
        var mode = new Option<GenerationMode>("--mode")
        {
            Description = "full: re-run the sequence per token (the reference); cached: keep past queries; recurrent: the synaptic state, constant cost per token",
            DefaultValueFactory = _ => GenerationMode.Recurrent,
        };
        var saveState = new Option<string?>("--save-state") { Description = "Save the synaptic state after generating (recurrent mode)" };
        var loadState = new Option<string?>("--load-state") { Description = "Continue from a saved synaptic state instead of starting empty" };
        var force = new Option<bool>("--force") { Description = "Let --save-state replace a file that exists (the --load-state file needs no --force)" };
        var backend = new Option<Backend>("--backend") { Description = "managed: the C# engine; onnx: ONNX Runtime on an export-onnx folder", DefaultValueFactory = _ => Backend.Managed };
        var onnx = new Option<string?>("--onnx") { Description = "Folder written by bdh export-onnx (with --backend onnx)" };
        var device = new Option<OnnxDevice>("--device")
        {
            Description = "ONNX Runtime device: auto (DirectML if present, else the CPU), dml (DirectML required), cpu",
            DefaultValueFactory = _ => OnnxDevice.Auto,
        };
        var threads = CommonOptions.Threads();
        var command = new Command("sample", "Generate text from a checkpoint or an ONNX export.")
            { checkpoint, prompt, tokens, topK, temperature, seed, mode, saveState, loadState, force, backend, onnx, device, threads };
        command.SetAction(r =>
        {
            CommonOptions.ApplyThreads(r.GetValue(threads));
            int count = r.GetValue(tokens);
            if (count < 0) throw new UserError("--tokens: must be >= 0");
            if (r.GetValue(topK) is < 1) throw new UserError("--top-k: must be >= 1");
            if (r.GetValue(temperature) is not > 0 || !double.IsFinite(r.GetValue(temperature))) throw new UserError("--temperature: must be a finite number > 0");
            string? load = r.GetValue(loadState), save = r.GetValue(saveState);
            if ((load ?? save) is not null && r.GetValue(mode) != GenerationMode.Recurrent)
                throw new UserError("--save-state/--load-state: need --mode recurrent");
            if (save is not null && count == 0) throw new UserError("--save-state: generate at least one token");
            if (save is not null) CommonOptions.RequireWritableFile(save, "--save-state");
            // Saving back to the state it loaded continues a conversation in place; any other file stays unless asked.
            if (save is not null && File.Exists(save) && !r.GetValue(force) && (load is null || Path.GetFullPath(load) != Path.GetFullPath(save)))
                throw new UserError($"--save-state: '{save}' exists (pass --force to replace it)");
            if (load is not null) InputFile.Require(load, "--load-state");
            string text = r.GetValue(prompt) ?? (load is null ? "ROMEO:" : "");
            if (text.Length == 0 && load is null) throw new UserError("--prompt: must not be empty");
            int[] promptTokens = CommonOptions.Encode(text);
            var options = new SamplingOptions(r.GetValue(temperature), r.GetValue(topK), r.GetValue(seed));
            bool onOnnx = r.GetValue(backend) == Backend.Onnx;
            if (onOnnx)
            {
                if (r.GetValue(onnx) is null) throw new UserError("--backend onnx: needs --onnx DIR (a bdh export-onnx folder)");
                if (r.GetValue(checkpoint) is not null) throw new UserError("--checkpoint: not used with --backend onnx (the export holds the weights)");
                if (r.GetResult(mode) is { Implicit: false } || (load ?? save) is not null)
                    throw new UserError("--mode/--save-state/--load-state: for the managed backend (onnx runs prefill, then the recurrent step)");
            }
            else
            {
                if (r.GetValue(checkpoint) is null) throw new UserError("--checkpoint: required (or --backend onnx --onnx DIR)");
                if (r.GetValue(onnx) is not null) throw new UserError("--onnx: needs --backend onnx");
            }
            using var onnxModel = onOnnx ? LoadOnnx(r.GetValue(onnx)!, r.GetValue(device), r.GetValue(threads)) : null;
            var model = onOnnx ? null : CommonOptions.LoadModel(r.GetValue(checkpoint)!);
            try { onnxModel?.CheckLength(promptTokens.Length, count); } // before anything reaches stdout
            catch (OnnxBdhException e) { throw new UserError($"{e.Message} (export again with a larger --max-positions)"); }
            var snapshot = load is null ? null : StateSnapshot.Load(load, model!.Config);
            if (model is not null)
            {
                double bytes = RequireFits(model.Config, r.GetValue(mode), snapshot?.Position ?? 0, promptTokens.Length + (snapshot is null ? 0 : 1), count, load);
                if (bytes > 1e9) Console.Error.WriteLine($"bdh: --tokens {count}: about {bytes / 1e9:0.0} GB of memory");
            }

            var stdout = Console.OpenStandardOutput();
            stdout.Write(System.Text.Encoding.UTF8.GetBytes(text));
            var projection = new GenerationProjection(count, (snapshot?.Position ?? 0) + promptTokens.Length,
                GenerationProjection.Cost(model?.Config ?? onnxModel!.Config, onOnnx ? GenerationMode.Recurrent : r.GetValue(mode)), Console.Error);
            void Print(int t)
            {
                stdout.WriteByte((byte)t);
                stdout.Flush();
                projection.Token();
            }
            var watch = Stopwatch.StartNew();
            if (onnxModel is not null) onnxModel.Generate(promptTokens, count, options, Print);
            else if (load is null && save is null) Sampler.Generate(model!, promptTokens, count, options, Print, r.GetValue(mode));
            else ContinueState(model!, promptTokens, snapshot, save, count, options, Print);
            stdout.WriteByte((byte)'\n');
            stdout.Flush();
            double seconds = watch.Elapsed.TotalSeconds;
            string engine = onnxModel is null ? r.GetValue(mode).ToString().ToLowerInvariant() : $"onnx, {onnxModel.Provider}";
            Console.Error.WriteLine($"{count} tokens in {seconds:0.00} s, {count / Math.Max(seconds, 1e-9):0.0} tokens/s ({engine})");
            return 0;
        });
        return command;
    }

    /// <summary>The export in --onnx on --device; the library's errors name the folder and the device, the user knows them by these flags.</summary>
    private static OnnxBdh LoadOnnx(string dir, OnnxDevice device, int? threads)
    {
        OnnxBdh.RequireExport(dir, "--onnx");
        try { return OnnxBdh.Load(dir, device, m => Console.Error.WriteLine($"bdh: {m}"), threads); }
        catch (DirectMLUnavailableException e) { throw new UserError($"--device dml: {e.Reason}"); }
    }

    /// <summary>
    /// The memory a generation needs; throws unless <paramref name="input"/> tokens read from <paramref name="position"/> on, then <paramref name="count"/>
    /// generated, keep every position an int and fit in memory: recurrent generation keeps ρ and the tokens, cached
    /// generation each past token's rope(xs) [N] and x [D] per head and layer, full generation re-runs the whole sequence.
    /// </summary>
    private static double RequireFits(BdhConfig c, GenerationMode mode, int position, int input, int count, string? load)
    {
        long last = (long)position + input + count;
        if (last > int.MaxValue)
            throw new UserError(load is null ? $"--tokens: {input} + {count} tokens pass the last position a model reads ({int.MaxValue})"
                : $"--tokens: the state in '{load}' is at position {position}; {count} more tokens pass the last position a model reads ({int.MaxValue})");
        double bytes = 8.0 * last + mode switch
        {
            GenerationMode.Recurrent => c.StateBytes,
            GenerationMode.Cached => 4.0 * c.NLayer * c.NHead * (c.N + c.NEmbd) * last,
            _ => c.StepBytes(1, last, training: false),
        };
        if (mode == GenerationMode.Full) c.RequireStepFits(1, last, training: false, "--tokens");
        MemoryBudget.Require(bytes, $"--tokens {count} (--mode {mode.ToString().ToLowerInvariant()})");
        return bytes;
    }

    /// <summary>Recurrent generation from a saved state (its pending token first, then the prompt), optionally saving the state after.</summary>
    private static void ContinueState(BdhModel<float> model, int[] promptTokens, StateSnapshot? snapshot, string? save, int count, SamplingOptions options, Action<int> print)
    {
        var stepper = snapshot?.Resume(model) ?? FastStepper<float>.Recurrent(model);
        int[] input = snapshot is null ? promptTokens : [snapshot.PendingToken, .. promptTokens];
        var all = Sampler.Continue(stepper, input, count, options, print);
        if (save is null) return;
        try { StateSnapshot.Capture(stepper, pendingToken: all[^1]).Save(save, model.Config); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new UserError($"--save-state: {e.Message}"); }
    }
}

/// <summary>Which engine runs <c>bdh sample</c>.</summary>
public enum Backend { Managed, Onnx }
