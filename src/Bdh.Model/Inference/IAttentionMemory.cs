namespace Bdh.Model.Inference;

/// <summary>
/// What one layer's attention remembers of earlier tokens when generating one token at a time.
/// For the token at position t, with q = rope(xs_t) [nh, N] and x = x_t [D] (the layer input):
/// <c>a[h] = Σ_{s&lt;t} (q[h]·q_s[h]) x_s</c>, then (q[h], x) is remembered. Heads are independent
/// (and may be called in parallel); each call handles one head.
/// </summary>
public interface IAttentionMemory<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>a [D] = attention of head h's query q [N] over earlier tokens; then remembers (q, x [D]).</summary>
    void ReadThenWrite(int layer, int head, ReadOnlySpan<T> q, ReadOnlySpan<T> x, Span<T> a);

    /// <summary>Takes in a whole prompt at once: rotated queries [nh, T, N] and layer inputs [.., T, D] (the parallel form).</summary>
    void Absorb(int layer, Tensor<T> q, Tensor<T> x);
}
