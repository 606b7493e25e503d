using System.Globalization;

namespace Bdh.Model;

/// <summary>
/// The checkpoints of a training run, in its folder's checkpoints/: step-NNNNNN.safetensors (the model, loadable
/// by the reference) beside step-NNNNNN.optim.safetensors (the optimizer's state). A pair counts only once both
/// files exist: the optimizer file is written first and the model file last, so a run killed mid-save leaves the
/// previous pair the latest. Older pairs are removed once a newer one is complete.
/// </summary>
public sealed class CheckpointStore(string runFolder)
{
    private const string StepPrefix = "step-", ModelExtension = ".safetensors", OptimizerExtension = ".optim.safetensors";

    /// <summary>checkpoints/ in the run folder.</summary>
    public string Folder { get; } = Path.Combine(runFolder, "checkpoints");

    /// <summary>The newest complete checkpoint's model file, or null when there is none.</summary>
    public string? Latest => Complete().OrderByDescending(c => c.Step).Select(c => c.Path).FirstOrDefault();

    /// <summary>The step of <see cref="Latest"/>, or null.</summary>
    public int? LatestStep => Complete().Select(c => (int?)c.Step).Max();

    /// <summary>
    /// Removes the temporary files of checkpoint writes that a killed run left (.step-*.tmp); the caller must be
    /// the run folder's only writer. Returns how many there were.
    /// </summary>
    public int RemoveUnfinished()
    {
        if (!Directory.Exists(Folder)) return 0;
        var leftovers = Directory.GetFiles(Folder, $".{StepPrefix}*.tmp");
        foreach (var file in leftovers) File.Delete(file);
        return leftovers.Length;
    }

    /// <summary>
    /// Writes the pair of <paramref name="step"/>: the optimizer's tensors and metadata, then the model; both files
    /// carry the step in their metadata. Then removes every older file of a pair, complete or not (a run killed between
    /// the two deletions of an older pair left one of them behind, which no later save removed).
    /// </summary>
    internal void Save(int step, BdhModel<float> model, IEnumerable<(string Name, int[] Shape, ReadOnlyMemory<float> Data)> optimizerTensors,
        IReadOnlyDictionary<string, string> optimizerMetadata)
    {
        Directory.CreateDirectory(Folder);
        string modelFile = Path.Combine(Folder, $"{StepPrefix}{step:D6}{ModelExtension}");
        var stepMetadata = new Dictionary<string, string> { ["step"] = step.ToString(CultureInfo.InvariantCulture) };
        SafetensorsFile.Write(OptimizerFile(modelFile), optimizerTensors, new Dictionary<string, string>(optimizerMetadata.Concat(stepMetadata)));
        Checkpoint.Save(model, modelFile, stepMetadata);
        foreach (var path in Directory.GetFiles(Folder, StepPrefix + "*" + ModelExtension))
            if (StepOf(path.EndsWith(OptimizerExtension, StringComparison.Ordinal) ? ModelFile(path) : path) < step)
                File.Delete(path);
    }

    /// <summary>
    /// The latest complete pair, read and with its optimizer file's step checked against its name; null when there is
    /// none. A file whose step disagrees is a <see cref="SafetensorsException"/> naming it.
    /// </summary>
    internal (int Step, SafetensorsFile Model, SafetensorsFile Optimizer)? ReadLatest()
    {
        if (Latest is not string modelFile) return null;
        int step = StepOf(modelFile)!.Value;
        var model = SafetensorsFile.Read(modelFile);
        var optimizer = SafetensorsFile.Read(OptimizerFile(modelFile));
        string stored = optimizer.Metadata.TryGetValue("step", out var value) ? value
            : throw new SafetensorsException($"{optimizer.Path}: no 'step' in its metadata");
        if (!int.TryParse(stored, NumberStyles.None, CultureInfo.InvariantCulture, out int s) || s != step)
            throw new SafetensorsException($"{optimizer.Path}: its step '{stored}' is not the {step} of its file name");
        return (step, model, optimizer);
    }

    private static string OptimizerFile(string modelFile) => Path.ChangeExtension(modelFile, OptimizerExtension);

    private static string ModelFile(string optimizerFile) => optimizerFile[..^OptimizerExtension.Length] + ModelExtension;

    /// <summary>The step in a model file's name (step-000500.safetensors: 500); null for any other name.</summary>
    private static int? StepOf(string modelFile)
    {
        string name = Path.GetFileName(modelFile);
        if (!name.StartsWith(StepPrefix, StringComparison.Ordinal) || !name.EndsWith(ModelExtension, StringComparison.Ordinal)
            || name.EndsWith(OptimizerExtension, StringComparison.Ordinal)) return null;
        return int.TryParse(name[StepPrefix.Length..^ModelExtension.Length], NumberStyles.None, CultureInfo.InvariantCulture, out int step)
            ? step : null;
    }

    /// <summary>Every model file whose optimizer file also exists, with its step.</summary>
    private IEnumerable<(int Step, string Path)> Complete()
    {
        if (!Directory.Exists(Folder)) yield break;
        foreach (var path in Directory.EnumerateFiles(Folder, StepPrefix + "*" + ModelExtension))
            if (StepOf(path) is int step && File.Exists(OptimizerFile(path)))
                yield return (step, path);
    }
}
