using Bdh.Model.Inference;
using Bdh.Model.Text;

namespace Bdh.Model;

/// <summary>
/// A byte-level BDH model ready to generate text: its weights are loaded once and shared, read-only, by every
/// <see cref="BdhSession"/> made from it, and sessions may generate concurrently.
/// </summary>
/// <example>
/// <code>
/// var model = BdhLanguageModel.Load("runs/cpu-20260101-120000");
/// var session = model.StartSession();
/// await foreach (var token in session.GenerateAsync("ROMEO:", new GenerationOptions { MaxTokens = 100 }))
///     Console.Write(token.Text);
/// </code>
/// </example>
public sealed class BdhLanguageModel
{
    /// <summary>The encoders laid out for generation (<see cref="StepperLayouts{T}"/>), made once and read by every session.</summary>
    private readonly Task<StepperLayouts<float>> _layouts;

    /// <summary>The weights; generation never writes them.</summary>
    public BdhModel<float> Weights { get; }
    public BdhConfig Config => Weights.Config;
    /// <summary>What the model is called: its checkpoint's file name without extension, unless given.</summary>
    public string Name { get; }

    /// <summary>
    /// The memory of one conversation, in bytes: ρ [nh, N, D] per layer. It does not grow with the conversation
    /// (4 MB for the <c>cpu</c> preset, 192 MB for the paper's config).
    /// </summary>
    public long StateBytes => (long)Config.NLayer * Config.NHead * Config.N * Config.NEmbd * sizeof(float);

    /// <exception cref="ArgumentException">the model's vocabulary is not the 256 byte values.</exception>
    public BdhLanguageModel(BdhModel<float> weights, string name = "bdh")
    {
        if (weights.Config.VocabSize != ByteTokens.VocabSize)
            throw new ArgumentException($"vocab_size is {weights.Config.VocabSize}; text generation needs the 256 byte values", nameof(weights));
        Weights = weights;
        Name = name;
        _layouts = StepperLayouts<float>.Make(weights);
    }

    /// <summary>Loads a <c>.safetensors</c> checkpoint, or the latest complete checkpoint of a <c>bdh train</c> output folder.</summary>
    /// <exception cref="FileNotFoundException">no such file or folder, or a folder without a checkpoint.</exception>
    /// <exception cref="InputException">the file is empty, not a regular file, or not a BDH checkpoint (<see cref="SafetensorsException"/>).</exception>
    /// <exception cref="ArgumentException">the checkpoint's vocabulary is not the 256 byte values.</exception>
    public static BdhLanguageModel Load(string fileOrFolder)
    {
        string file = Checkpoint.Find(fileOrFolder);
        return new BdhLanguageModel(Checkpoint.Load(file), Path.GetFileNameWithoutExtension(file));
    }

    /// <summary>A new, empty conversation.</summary>
    public BdhSession StartSession() => new(this, FastStepper<float>.Recurrent(Weights, _layouts), pendingToken: null);

    /// <summary>A conversation that continues from <paramref name="snapshot"/> (which stays as it is, to be resumed again).</summary>
    /// <exception cref="ArgumentException">the snapshot was taken from a model of another shape.</exception>
    public BdhSession ResumeSession(StateSnapshot snapshot)
    {
        var state = snapshot.State;
        if (state.Rho.Length != Config.NLayer || state.Heads != Config.NHead || state.N != Config.N || state.D != Config.NEmbd)
            throw new ArgumentException("the snapshot was taken from a model of another shape", nameof(snapshot));
        if ((uint)snapshot.PendingToken >= ByteTokens.VocabSize) throw new ArgumentException($"pending token {snapshot.PendingToken} is not a byte", nameof(snapshot));
        return new BdhSession(this, snapshot.Resume(Weights, _layouts), snapshot.PendingToken);
    }

    /// <summary>A conversation saved by <see cref="BdhSession.Save"/> (or <c>bdh sample --save-state</c>).</summary>
    /// <exception cref="SafetensorsException">not a state file, or saved for a model of another config.</exception>
    public BdhSession LoadSession(string path) => ResumeSession(StateSnapshot.Load(path, Config));
}
