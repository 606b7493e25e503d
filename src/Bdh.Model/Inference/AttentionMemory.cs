using Bdh.Tensors.Kernels;

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

/// <summary>
/// The synaptic state: per layer and head, ρ [N, D] = Σ_s q_s ⊗ x_s. Because BDH's attention has no
/// softmax, <c>a = qᵀρ</c> exactly, so each token costs the same whatever its position. Only the rows of
/// ρ where q is non-zero are read or written: xs is sparse (ReLU), and rope keeps a pair zero when both
/// its neurons are.
/// </summary>
public sealed class SynapticState<T> : IAttentionMemory<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    public int Heads { get; }
    public int N { get; }
    public int D { get; }
    /// <summary>ρ per layer, [nh, N, D] row-major.</summary>
    public T[][] Rho { get; }

    public SynapticState(int layers, int heads, int n, int d)
    {
        (Heads, N, D) = (heads, n, d);
        Rho = Enumerable.Range(0, layers).Select(_ => new T[heads * n * d]).ToArray();
    }

    public void ReadThenWrite(int layer, int head, ReadOnlySpan<T> q, ReadOnlySpan<T> x, Span<T> a) =>
        Synapses.ReadThenWrite(q, Rho[layer].AsSpan(head * N * D, N * D), x, a); // a = qᵀρ, then ρ += q ⊗ x

    public void Absorb(int layer, Tensor<T> q, Tensor<T> x)
    {
        // ρ[h] += q[h]ᵀ·x: [N, T]·[T, D] per head.
        int t = x.Length / D;
        for (int h = 0; h < Heads; h++)
            Gemm.Multiply(N, D, t, new MatrixRef<T>(q.Array, h * t * N, N, Transposed: true), new MatrixRef<T>(x.Array, 0, D),
                new MatrixRef<T>(Rho[layer], h * N * D, D), accumulate: true);
    }

    public SynapticState<T> Clone()
    {
        var copy = new SynapticState<T>(Rho.Length, Heads, N, D);
        for (int l = 0; l < Rho.Length; l++) Rho[l].CopyTo(copy.Rho[l], 0);
        return copy;
    }
}

/// <summary>
/// Keeps every past (q, x) per head and recomputes the scores: O(t) per token, the usual KV cache.
/// Each head has its own lists (x is stored once per head), so heads can run in parallel.
/// </summary>
public sealed class AttentionCache<T>(int layers, int heads, int n, int d) : IAttentionMemory<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly List<T[]>[,] _q = NewLists(layers, heads), _x = NewLists(layers, heads);

    private static List<T[]>[,] NewLists(int layers, int heads)
    {
        var lists = new List<T[]>[layers, heads];
        for (int l = 0; l < layers; l++) for (int h = 0; h < heads; h++) lists[l, h] = [];
        return lists;
    }

    public void ReadThenWrite(int layer, int head, ReadOnlySpan<T> q, ReadOnlySpan<T> x, Span<T> a)
    {
        a.Clear();
        List<T[]> queries = _q[layer, head], inputs = _x[layer, head];
        for (int s = 0; s < queries.Count; s++)
            TP.MultiplyAdd(inputs[s], TP.Dot(q, queries[s]), a, a);
        queries.Add(q.ToArray());
        inputs.Add(x.ToArray());
    }

    public void Absorb(int layer, Tensor<T> q, Tensor<T> x)
    {
        int t = x.Length / d;
        for (int h = 0; h < heads; h++)
            for (int s = 0; s < t; s++)
            {
                _q[layer, h].Add(q.Span.Slice((h * t + s) * n, n).ToArray());
                _x[layer, h].Add(x.Span.Slice(s * d, d).ToArray());
            }
    }
}
