namespace Bdh.Model.Inference;

/// <summary>
/// BDH one token at a time: the logits [V] of the next token, given every token stepped so far. Three steppers
/// compute it: <see cref="PlainStepper{T}"/> writes the recurrence over the synaptic state ρ as its equations,
/// <see cref="FastStepper{T}"/> computes the same recurrence (or a cache of past queries) laid out for speed, and
/// <see cref="FullPassStepper{T}"/> re-runs the parallel forward pass over all the tokens, as the reference's generate().
/// </summary>
public interface IBdhStepper<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>Tokens stepped so far: the position of the next one.</summary>
    int Position { get; }

    /// <summary>Reads <paramref name="token"/> at <see cref="Position"/> and returns the next token's logits [V], the stepper's own span: read it before the next call.</summary>
    ReadOnlySpan<T> Step(int token);

    /// <summary>Reads a prompt from <see cref="Position"/> on and returns the logits [V] after its last token, as <see cref="Step"/> does.</summary>
    ReadOnlySpan<T> Prefill(int[] prompt);

    /// <summary>A stepper at position 0 that generates as <paramref name="mode"/> says.</summary>
    static IBdhStepper<T> Start(BdhModel<T> model, GenerationMode mode) => mode switch
    {
        GenerationMode.Full => new FullPassStepper<T>(model),
        GenerationMode.Cached => FastStepper<T>.Cached(model),
        GenerationMode.Recurrent => FastStepper<T>.Recurrent(model),
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "not a generation mode"),
    };
}
