using System.Globalization;

namespace Bdh.Model.Inference;

/// <summary>
/// A saved working memory: the synaptic state ρ of every layer after the tokens before
/// <see cref="Position"/>, and the token at <see cref="Position"/> not yet read. Resuming feeds that
/// token first, so a restored state continues exactly as the original would have.
/// </summary>
public sealed record StateSnapshot(SynapticState<float> State, int Position, int PendingToken)
{
    private const string Format = "bdh-synaptic-state";

    public static StateSnapshot Capture(FastStepper<float> stepper, int pendingToken) =>
        stepper.Memory is SynapticState<float> state
            ? new StateSnapshot(state.Clone(), stepper.Position, pendingToken)
            : throw new InvalidOperationException("only the recurrent memory (synaptic state) can be saved");

    /// <summary>An independent copy: both continue on their own.</summary>
    public StateSnapshot Fork() => this with { State = State.Clone() };

    /// <summary>A stepper that continues from here (on a copy, so the snapshot can be resumed again).</summary>
    public FastStepper<float> Resume(BdhModel<float> model, Task<StepperLayouts<float>>? layouts = null) => new(model, State.Clone(), Position, layouts);

    public void Save(string path, BdhConfig config)
    {
        int[] shape = [State.Heads, State.N, State.D];
        SafetensorsFile.Write(path, State.Rho.Select((rho, layer) => ($"rho.{layer}", shape, (ReadOnlyMemory<float>)rho)), new Dictionary<string, string>
        {
            ["format"] = Format,
            ["config"] = config.ToJson(),
            ["position"] = Position.ToString(CultureInfo.InvariantCulture),
            ["pending_token"] = PendingToken.ToString(CultureInfo.InvariantCulture),
        });
    }

    public static StateSnapshot Load(string path, BdhConfig config)
    {
        var file = SafetensorsFile.Read(path);
        if (file.Metadata.GetValueOrDefault("format") != Format) throw new SafetensorsException($"{path}: not a BDH synaptic-state file");
        if (Checkpoint.ReadConfig(file) != config) throw new SafetensorsException($"{path}: saved for another model config ({file.Metadata["config"]})");
        if (!int.TryParse(file.Metadata.GetValueOrDefault("position"), NumberStyles.None, CultureInfo.InvariantCulture, out int position) ||
            !int.TryParse(file.Metadata.GetValueOrDefault("pending_token"), NumberStyles.None, CultureInfo.InvariantCulture, out int pending) ||
            pending >= config.VocabSize)
            throw new SafetensorsException($"{path}: bad position or pending_token");
        for (int layer = 0; layer < config.NLayer; layer++)
            if (!file.Entry($"rho.{layer}").Shape.SequenceEqual([config.NHead, config.N, config.NEmbd]))
                throw new SafetensorsException($"{path}: rho.{layer} has the wrong shape");
        var state = new SynapticState<float>(config.NLayer, config.NHead, config.N, config.NEmbd);
        for (int layer = 0; layer < config.NLayer; layer++)
        {
            using var rho = Checkpoint.RequireFinite(file, $"rho.{layer}", file.ReadTensor<float>($"rho.{layer}"));
            rho.Span.CopyTo(state.Rho[layer]);
        }
        return new StateSnapshot(state, position, pending);
    }
}
