namespace Bdh.Model.Inference;

/// <summary>
/// BDH one token at a time by running <see cref="BdhModel{T}.Forward"/> over every token so far, as the reference's
/// generate() does: nothing is remembered but the tokens, and a token at position t costs O(t²).
/// </summary>
public sealed class FullPassStepper<T>(BdhModel<T> model) : IBdhStepper<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly List<int> _tokens = [];
    private readonly T[] _logits = new T[model.Config.VocabSize];

    public int Position => _tokens.Count;

    public ReadOnlySpan<T> Step(int token) => Prefill([token]);

    public ReadOnlySpan<T> Prefill(int[] prompt)
    {
        int vocab = _logits.Length;
        foreach (int token in prompt)
            if ((uint)token >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(prompt), $"token {token} outside vocabulary of {vocab}");
        _tokens.AddRange(prompt);
        int t = _tokens.Count;
        using var _ = NoGrad.Scope();
        var (logits, _) = model.Forward([.. _tokens], 1, t);
        logits.Value.Span.Slice((t - 1) * vocab, vocab).CopyTo(_logits); // the last position's row of [1, T, V]
        logits.ReleaseGraph();
        return _logits;
    }
}
