namespace Bdh.Model;

/// <summary>
/// Model checkpoints as safetensors with the reference's state_dict names, the config as JSON in
/// <c>__metadata__.config</c>, so the reference loads our files and we load theirs.
/// </summary>
public static class Checkpoint
{
    public static BdhConfig ReadConfig(SafetensorsFile file)
    {
        if (!file.Metadata.TryGetValue("config", out var json))
            throw new SafetensorsException($"{file.Path}: no config in __metadata__");
        try { return BdhConfig.FromJson(json); }
        catch (Exception e) when (e is System.Text.Json.JsonException or ArgumentException or FormatException)
        {
            throw new SafetensorsException($"{file.Path}: bad config in __metadata__: {e.Message}");
        }
    }

    /// <summary>The model in a file; <paramref name="ropeSinCos"/> as <see cref="BdhModel{T}.RopeSinCos"/> (null: ours).</summary>
    public static BdhModel<T> LoadModel<T>(SafetensorsFile file, BdhConfig? config = null, Tensors.Kernels.SinCosKernel? ropeSinCos = null) where T : unmanaged, IFloatingPointIeee754<T>
    {
        config ??= ReadConfig(file);
        RequireShapes(file, config);
        var weights = BdhModel<T>.ParameterShapes(config).ToDictionary(p => p.Name, p => RequireFinite(file, p.Name, file.ReadTensor<T>(p.Name)));
        try { return new BdhModel<T>(config, weights, ReadFreqs(file, config), ropeSinCos); }
        catch (ArgumentException e) { throw new SafetensorsException($"{file.Path}: {e.Message}"); }
    }

    /// <summary>The rope frequencies [N]: the file's attn.freqs buffer, or get_freqs(N) for a file without one.</summary>
    internal static float[] ReadFreqs(SafetensorsFile file, BdhConfig config) =>
        file.Entries.ContainsKey("attn.freqs")
            ? RequireFinite(file, "attn.freqs", file.ReadTensor<float>("attn.freqs")).Span.ToArray()
            : Tensors.Kernels.Rope.Frequencies(config.N);

    /// <summary>
    /// Checks the config against the tensors the file holds, from its header alone, before anything is
    /// allocated: every size the config states is then bounded by the file's own length.
    /// </summary>
    internal static void RequireShapes(SafetensorsFile file, BdhConfig config)
    {
        foreach (var (name, shape) in BdhModel<float>.ParameterShapes(config))
        {
            var entry = file.Entry(name);
            if (!entry.Shape.SequenceEqual(shape))
                throw new SafetensorsException($"{file.Path}: tensor '{name}' is {Tensor<float>.Format(entry.Shape)}, the config needs {Tensor<float>.Format(shape)}");
        }
        if (file.Entries.TryGetValue("attn.freqs", out var freqs) && Tensor<float>.ShapeLength(freqs.Shape) != config.N)
            throw new SafetensorsException($"{file.Path}: attn.freqs has {Tensor<float>.ShapeLength(freqs.Shape)} values, the config needs N = {config.N}");
    }

    /// <summary><paramref name="tensor"/>, unless it holds a NaN or an infinity: a model with one computes garbage.</summary>
    internal static Tensor<T> RequireFinite<T>(SafetensorsFile file, string name, Tensor<T> tensor) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var span = tensor.Span;
        if (!TP.IsFiniteAll<T>(span))
        {
            int i = 0;
            while (T.IsFinite(span[i])) i++;
            throw new SafetensorsException($"{file.Path}: tensor '{name}' holds {span[i]} at element {i} (a diverged or corrupt model)");
        }
        return tensor;
    }

    public static BdhModel<float> Load(string path) => LoadModel<float>(SafetensorsFile.Read(path));

    /// <summary>The checkpoint a path names: a file as it is, a <c>bdh train</c> output folder its latest complete checkpoint.</summary>
    /// <exception cref="FileNotFoundException">no such file or folder, or a folder without a checkpoint.</exception>
    public static string Find(string fileOrFolder) =>
        Directory.Exists(fileOrFolder)
            ? new CheckpointStore(fileOrFolder).Latest ?? throw new FileNotFoundException($"no checkpoint in folder '{fileOrFolder}'", fileOrFolder)
            : File.Exists(fileOrFolder) ? fileOrFolder : throw new FileNotFoundException($"no such file or folder '{fileOrFolder}'", fileOrFolder);

    public static void Save(BdhModel<float> model, string path, IReadOnlyDictionary<string, string>? extraMetadata = null)
    {
        var metadata = new Dictionary<string, string> { ["config"] = model.Config.ToJson(), ["format"] = "pt" };
        foreach (var (k, v) in extraMetadata ?? new Dictionary<string, string>()) metadata[k] = v;
        var tensors = model.Parameters.Select(p => (p.Name, p.Value.Shape, (ReadOnlyMemory<float>)p.Value.Value.Memory)).ToList();
        tensors.Add(("attn.freqs", [1, 1, 1, model.Config.N], model.Freqs));
        SafetensorsFile.Write(path, tensors, metadata);
    }
}
