using System.Globalization;
using Bdh.Model;
using Bdh.Tensors;
using Microsoft.ML.OnnxRuntime;

namespace Bdh.DirectML;

/// <summary>Where ONNX Runtime runs the graphs: DirectML when the build and the machine have it, or the CPU.</summary>
public enum OnnxDevice { Auto, Dml, Cpu }

/// <summary>A user-facing failure of the ONNX backend: a bad export folder, or a device that cannot be had.</summary>
public class OnnxBdhException(string message) : InputException(message);

/// <summary><see cref="OnnxDevice.Dml"/> was asked for and cannot be had; <see cref="Reason"/> says why.</summary>
public sealed class DirectMLUnavailableException(string reason) : OnnxBdhException($"DirectML unavailable: {reason}")
{
    public string Reason { get; } = reason;
}

/// <summary>
/// BDH generation from an <see cref="OnnxExport"/> folder through ONNX Runtime. The prompt goes through
/// prefill.onnx in one run; every further token through step.onnx, the synaptic state ρ staying in
/// OrtValues bound on the device between steps (on a GPU it never travels back to the host). Only the
/// logits come back, into one host buffer, and are drawn from exactly as the managed engine does.
/// </summary>
public sealed class OnnxBdh : IDisposable
{
    public BdhConfig Config { get; }
    public int MaxPositions { get; }
    /// <summary>The execution provider running the graphs (DmlExecutionProvider or CPUExecutionProvider).</summary>
    public string Provider { get; }

    private readonly InferenceSession _prefill, _step;
    private readonly OrtMemoryInfo _stateMemory;

    private OnnxBdh(InferenceSession prefill, InferenceSession step, string provider, OrtMemoryInfo stateMemory)
    {
        _prefill = prefill;
        _step = step;
        Provider = provider;
        _stateMemory = stateMemory;
        var metadata = prefill.ModelMetadata.CustomMetadataMap;
        if (!metadata.TryGetValue(OnnxExport.ConfigKey, out var json) || !metadata.TryGetValue(OnnxExport.MaxPositionsKey, out var max)
            || !int.TryParse(max, NumberStyles.None, CultureInfo.InvariantCulture, out int maxPositions) || maxPositions < 1)
            throw new OnnxBdhException($"{OnnxExport.PrefillFile}: not a bdh export-onnx model (no valid bdh.config / bdh.max_positions metadata)");
        // Both graphs come from one export: the step graph must read the state prefill writes, with the same tables.
        var stepMetadata = step.ModelMetadata.CustomMetadataMap;
        if (stepMetadata.GetValueOrDefault(OnnxExport.ConfigKey) != json || stepMetadata.GetValueOrDefault(OnnxExport.MaxPositionsKey) != max
            || stepMetadata.GetValueOrDefault(OnnxExport.ExportIdKey) != metadata.GetValueOrDefault(OnnxExport.ExportIdKey))
            throw new OnnxBdhException($"{OnnxExport.StepFile}: not from the same export as {OnnxExport.PrefillFile} (their bdh.config, bdh.max_positions or bdh.export_id differ); export again");
        try { Config = BdhConfig.FromJson(json); }
        catch (Exception e) when (e is System.Text.Json.JsonException or ArgumentException or FormatException)
        {
            throw new OnnxBdhException($"{OnnxExport.PrefillFile}: bad bdh.config metadata: {e.Message}");
        }
        MaxPositions = maxPositions;
        RequireGraphsOf(Config);
    }

    /// <summary>
    /// Checks that the graphs' inputs and outputs are the ones <paramref name="config"/> makes: a config in the
    /// metadata that does not describe its graphs would otherwise fail inside ONNX Runtime, or compute garbage.
    /// </summary>
    private void RequireGraphsOf(BdhConfig config)
    {
        int[] state = [config.NHead, config.N, config.NEmbd];
        var rho = Enumerable.Range(0, config.NLayer);
        void Require(string file, IReadOnlyDictionary<string, NodeMetadata> actual, IEnumerable<(string Name, int[]? Shape)> expected)
        {
            var wanted = expected.ToList();
            bool same = actual.Count == wanted.Count && wanted.All(w =>
                actual.TryGetValue(w.Name, out var m) && (w.Shape is null || m.Dimensions.SequenceEqual(w.Shape)));
            if (!same)
                throw new OnnxBdhException($"{file}: its inputs and outputs are not those its {OnnxExport.ConfigKey} metadata describes ({config.ToJson()}); export again");
        }
        Require(OnnxExport.PrefillFile, _prefill.InputMetadata, [("tokens", null)]);
        Require(OnnxExport.PrefillFile, _prefill.OutputMetadata, [("logits", null), .. rho.Select(l => ($"rho{l}", (int[]?)state))]);
        Require(OnnxExport.StepFile, _step.InputMetadata, [("token", null), ("position", null), .. rho.Select(l => ($"rho{l}", (int[]?)state))]);
        Require(OnnxExport.StepFile, _step.OutputMetadata, [("logits", [1, 1, config.VocabSize]), .. rho.Select(l => ($"rho{l}.next", (int[]?)state))]);
    }

    /// <summary>Runs a graph; ONNX Runtime's failures on a graph from the user's folder (e.g. a position past its tables) are bad input.</summary>
    private static void Run(InferenceSession session, RunOptions options, OrtIoBinding binding, string file)
    {
        try { session.RunWithBinding(options, binding); }
        catch (OnnxRuntimeException e) { throw new OnnxBdhException($"{file}: ONNX Runtime failed: {e.Message.Split('\n')[0]} (export again)"); }
    }

    /// <summary>
    /// Opens prefill.onnx and step.onnx in <paramref name="dir"/>. <c>Auto</c> tries DirectML and falls
    /// back to the CPU with a one-line <paramref name="notice"/>; <c>Dml</c> requires it (an
    /// <see cref="OnnxBdhException"/> when it cannot be had); <c>Cpu</c> never uses it.
    /// <paramref name="threads"/> caps ONNX Runtime's CPU threads (default: its own choice, all cores).
    /// </summary>
    public static OnnxBdh Load(string dir, OnnxDevice device = OnnxDevice.Auto, Action<string>? notice = null, int? threads = null)
    {
        RequireExport(dir);
        string prefill = Path.Combine(dir, OnnxExport.PrefillFile), step = Path.Combine(dir, OnnxExport.StepFile);

        if (device != OnnxDevice.Cpu)
        {
            string? why = null;
            if (!ExecutionProviders.HasDirectML) why = "this build has no DirectML (Windows builds only)";
            else
            {
                try
                {
                    // DirectML asks for memory patterns off and sequential execution (its documented requirements).
                    return Open(prefill, step, threads, ExecutionProviders.DirectML,
                        new OrtMemoryInfo("DML", OrtAllocatorType.DeviceAllocator, 0, OrtMemType.Default),
                        o => { o.EnableMemoryPattern = false; o.ExecutionMode = ExecutionMode.ORT_SEQUENTIAL; o.AppendExecutionProvider_DML(0); });
                }
                catch (OnnxRuntimeException e) { why = $"DirectML failed to start: {e.Message.Split('\n')[0]}"; }
            }
            var unavailable = new DirectMLUnavailableException(why);
            if (device == OnnxDevice.Dml) throw unavailable;
            notice?.Invoke($"{unavailable.Message}; running on the CPU provider");
        }
        return Open(prefill, step, threads, ExecutionProviders.Cpu, OrtMemoryInfo.DefaultInstance, _ => { });
    }

    /// <summary>
    /// Throws an <see cref="InputException"/> unless <paramref name="dir"/> holds both graph files, each a regular
    /// file that is not empty (an <see cref="OnnxBdhException"/> when one is missing). <paramref name="what"/> leads the message, as in <see cref="InputFile.Require"/>.
    /// </summary>
    public static void RequireExport(string dir, string? what = null)
    {
        string lead = what is null ? "" : $"{what}: ";
        foreach (var file in new[] { OnnxExport.PrefillFile, OnnxExport.StepFile })
        {
            string path = Path.Combine(dir, file);
            if (!File.Exists(path)) throw new OnnxBdhException($"{lead}no {file} in '{dir}' (write one with bdh export-onnx)");
            InputFile.Require(path, what);
        }
    }

    private static OnnxBdh Open(string prefill, string step, int? threads, string provider, OrtMemoryInfo stateMemory, Action<SessionOptions> configure)
    {
        InferenceSession Session(string path)
        {
            using var options = new SessionOptions();
            if (threads is int n) options.IntraOpNumThreads = n;
            options.LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL; // its errors reach the user as one line each, through our exceptions
            configure(options);
            try { return new InferenceSession(path, options); }
            catch (OnnxRuntimeException e) when (provider == ExecutionProviders.Cpu)
            {
                throw new OnnxBdhException($"{Path.GetFileName(path)}: ONNX Runtime rejects it: {e.Message.Split('\n')[0]}");
            }
        }
        var prefillSession = Session(prefill);
        InferenceSession? stepSession = null;
        try
        {
            stepSession = Session(step);
            return new OnnxBdh(prefillSession, stepSession, provider, stateMemory);
        }
        catch { prefillSession.Dispose(); stepSession?.Dispose(); throw; }
    }

    /// <summary>The prefill graph's logits [T, V] for <paramref name="tokens"/> (row-major), as BdhModel.Forward gives them.</summary>
    public float[] Logits(int[] tokens)
    {
        CheckTokens(tokens);
        CheckLength(tokens.Length, 1);
        using var state = RunPrefill(tokens, out float[] logits);
        return logits;
    }

    /// <summary>
    /// Appends <paramref name="count"/> tokens to <paramref name="prompt"/> with the managed sampler's
    /// draw and seed, so greedy and seeded text equal the managed engine's. <paramref name="onLogits"/>
    /// sees the logits [V] each token is drawn from.
    /// </summary>
    public int[] Generate(int[] prompt, int count, SamplingOptions options, Action<int>? onToken = null, Action<float[]>? onLogits = null)
    {
        CheckTokens(prompt);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        options.Validate();
        CheckLength(prompt.Length, count);
        var rng = new Rng(options.Seed);
        var tokens = new List<int>(prompt);
        int vocab = Config.VocabSize;

        var state = RunPrefill(prompt, out float[] prefillLogits);
        var logits = prefillLogits.AsSpan((prompt.Length - 1) * vocab, vocab).ToArray();
        long[] token = [0], position = [0];
        using var tokenValue = OrtValue.CreateTensorValueFromMemory(token, [1, 1]);
        using var positionValue = OrtValue.CreateTensorValueFromMemory(position, [1]);
        using var logitsValue = OrtValue.CreateTensorValueFromMemory(logits, [1, 1, vocab]);
        using var binding = _step.CreateIoBinding();
        using var run = new RunOptions();
        try
        {
            for (int i = 0; i < count; i++)
            {
                onLogits?.Invoke(logits);
                int next = Sampler.Draw(logits, options, rng);
                tokens.Add(next);
                onToken?.Invoke(next);
                if (i + 1 == count) break;

                // Step: the drawn token at its position reads ρ_{t−1} and writes ρ_t; logits land in the host buffer.
                token[0] = next;
                position[0] = tokens.Count - 1;
                binding.ClearBoundInputs();
                binding.ClearBoundOutputs();
                binding.BindInput("token", tokenValue);
                binding.BindInput("position", positionValue);
                for (int layer = 0; layer < Config.NLayer; layer++) binding.BindInput($"rho{layer}", state[layer]);
                binding.BindOutput("logits", logitsValue);
                for (int layer = 0; layer < Config.NLayer; layer++) binding.BindOutputToDevice($"rho{layer}.next", _stateMemory);
                Run(_step, run, binding, OnnxExport.StepFile);
                var outputs = binding.GetOutputValues();
                state.Dispose();
                state = new StateValues(outputs, skip: 1);
            }
        }
        finally { state.Dispose(); }
        return tokens.ToArray();
    }

    /// <summary>
    /// A non-empty prompt of tokens in [0, V): the graphs' Gather would read a negative token from the table's end, and
    /// one past it is an error of the device (DirectML leaves it undefined).
    /// </summary>
    private void CheckTokens(int[] tokens, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tokens))] string? name = null)
    {
        if (tokens.Length == 0) throw new ArgumentException("must hold at least one token", name);
        foreach (int t in tokens)
            if ((uint)t >= (uint)Config.VocabSize) throw new ArgumentOutOfRangeException(name, t, $"tokens must be in [0, {Config.VocabSize})");
    }

    /// <summary>Runs prefill.onnx; returns ρ per layer on the state device and the logits [T, V] on the host.</summary>
    private StateValues RunPrefill(int[] tokens, out float[] logits)
    {
        logits = new float[tokens.Length * Config.VocabSize];
        using var tokenValue = OrtValue.CreateTensorValueFromMemory(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length]);
        using var logitsValue = OrtValue.CreateTensorValueFromMemory(logits, [1, tokens.Length, Config.VocabSize]);
        using var binding = _prefill.CreateIoBinding();
        using var run = new RunOptions();
        binding.BindInput("tokens", tokenValue);
        binding.BindOutput("logits", logitsValue);
        for (int layer = 0; layer < Config.NLayer; layer++) binding.BindOutputToDevice($"rho{layer}", _stateMemory);
        Run(_prefill, run, binding, OnnxExport.PrefillFile);
        return new StateValues(binding.GetOutputValues(), skip: 1);
    }

    /// <summary>Throws unless a prompt and <paramref name="count"/> drawn tokens fit the export's RoPE tables (the last draw needs no step).</summary>
    public void CheckLength(int promptTokens, int count)
    {
        long positions = (long)promptTokens + Math.Max(count - 1, 0);
        if (positions > MaxPositions)
            throw new OnnxBdhException($"{positions} positions: this export holds RoPE tables for {MaxPositions}");
    }

    /// <summary>The synaptic state ρ per layer: the outputs of a run after the logits, owned until disposed.</summary>
    private sealed class StateValues(IDisposableReadOnlyCollection<OrtValue> outputs, int skip) : IDisposable
    {
        public OrtValue this[int layer] => outputs[skip + layer];

        public void Dispose() => outputs.Dispose();
    }

    public void Dispose()
    {
        _prefill.Dispose();
        _step.Dispose();
        if (_stateMemory != OrtMemoryInfo.DefaultInstance) _stateMemory.Dispose();
    }
}
