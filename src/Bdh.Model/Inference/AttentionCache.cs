namespace Bdh.Model.Inference;

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
