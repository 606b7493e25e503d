namespace Bdh.Model.Inference;

/// <summary>
/// The synaptic state: per layer and head, ρ [N, D] = Σ_s q_s ⊗ x_s. Because BDH's attention has no
/// softmax, <c>a = qᵀρ</c> exactly, so each token costs the same whatever its position. A token reads
/// only the rows of ρ where q is non-zero (xs is sparse, and rope keeps a pair zero when both its
/// neurons are).
/// </summary>
/// <remarks>
/// Generation is bound by the bytes it moves, so writes are deferred: the last few tokens' (q, x) wait in
/// a small buffer, a token reads <c>a = qᵀρ + Σ_pending (q·q_s) x_s</c>, and every <see cref="Pending"/>
/// tokens one product adds them all, <c>ρ += Qᵀ X</c> ([N, K]·[K, D]). ρ is then read by each token and
/// written once per K tokens, not read and written by each: one pass over ρ per token instead of two.
/// <see cref="Rho"/> adds what is pending before it answers.
/// </remarks>
public sealed class SynapticState<T> : IAttentionMemory<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>Tokens buffered per head before they are added to ρ.</summary>
    public const int Pending = 16;

    private readonly T[][] _rho; // read through RhoLayers, which waits for the first touch
    /// <summary>
    /// Writes ρ's zeros on a pool thread as soon as it is allocated: the first touch of each new page is
    /// slow and the kernel serializes it (two threads clear it no faster than one), and on the paper config's
    /// 192 MB of ρ it takes a noticeable part of a second. Here it overlaps with the prompt's prefill (JIT and
    /// small products, mostly one thread) instead of stalling the first tokens.
    /// </summary>
    private readonly Task _firstTouch;
    private readonly T[][] _pendingQ, _pendingX; // per layer and head: [Pending, N] and [Pending, D]
    private readonly int[] _pendingCount;

    public int Heads { get; }
    public int N { get; }
    public int D { get; }

    public SynapticState(int layers, int heads, int n, int d)
    {
        (Heads, N, D) = (heads, n, d);
        _rho = Enumerable.Range(0, layers).Select(_ => GC.AllocateUninitializedArray<T>(heads * n * d)).ToArray();
        _firstTouch = Task.Run(() => { foreach (var layer in _rho) Array.Clear(layer); });
        _pendingQ = Enumerable.Range(0, layers * heads).Select(_ => new T[Pending * n]).ToArray();
        _pendingX = Enumerable.Range(0, layers * heads).Select(_ => new T[Pending * d]).ToArray();
        _pendingCount = new int[layers * heads];
    }

    /// <summary>The memory this state holds: ρ and the buffers of pending tokens.</summary>
    public long Bytes => (long)_rho.Length * Heads * (N * D + Pending * (N + D)) * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();

    /// <summary>ρ per layer, [nh, N, D] row-major, with every token so far added.</summary>
    public T[][] Rho
    {
        get
        {
            for (int slot = 0; slot < _pendingCount.Length; slot++) Flush(slot);
            return RhoLayers;
        }
    }

    /// <summary>
    /// Writes one layer's ρ [nh, N, D] with every token so far added to <paramref name="destination"/>, leaving the
    /// pending tokens pending: an observer reading ρ this way changes no later result, not even its rounding.
    /// </summary>
    public void CopyRho(int layer, T[] destination)
    {
        if (destination.Length != Heads * N * D) throw new ArgumentException($"needs {Heads * N * D} values, not {destination.Length}", nameof(destination));
        RhoLayers[layer].CopyTo(destination, 0);
        for (int h = 0; h < Heads; h++) AddPending(layer * Heads + h, destination, h * N * D);
    }

    private T[][] RhoLayers
    {
        get
        {
            _firstTouch.Wait();
            return _rho;
        }
    }

    public void ReadThenWrite(int layer, int head, ReadOnlySpan<T> q, ReadOnlySpan<T> x, Span<T> a)
    {
        int slot = layer * Heads + head, pending = _pendingCount[slot];
        T[] queries = _pendingQ[slot], inputs = _pendingX[slot];
        // a = qᵀρ [1, N]·[N, D], reading only the rows where q ≠ 0; then the pending tokens, in order.
        Gemv.RowTimesMatrix(q, RhoLayers[layer].AsSpan(head * N * D, N * D), a);
        for (int s = 0; s < pending; s++)
            TP.MultiplyAdd(inputs.AsSpan(s * D, D), TP.Dot(q, queries.AsSpan(s * N, N)), a, a);
        Remember(slot, q, x);
    }

    /// <summary>Adds (q, x) to a slot's pending tokens; a full buffer joins ρ.</summary>
    private void Remember(int slot, ReadOnlySpan<T> q, ReadOnlySpan<T> x)
    {
        int pending = _pendingCount[slot];
        q.CopyTo(_pendingQ[slot].AsSpan(pending * N, N));
        x.CopyTo(_pendingX[slot].AsSpan(pending * D, D));
        _pendingCount[slot] = pending + 1;
        if (pending + 1 == Pending) Flush(slot);
    }

    /// <summary>ρ[head] += Qᵀ X over the pending tokens of one (layer, head) slot.</summary>
    private void Flush(int slot)
    {
        AddPending(slot, RhoLayers[slot / Heads], slot % Heads * N * D);
        _pendingCount[slot] = 0;
    }

    /// <summary>rho[offset..] [N, D] += Qᵀ X over a slot's pending tokens ([N, K]·[K, D]); they stay pending.</summary>
    private void AddPending(int slot, T[] rho, int offset)
    {
        int pending = _pendingCount[slot];
        if (pending == 0) return;
        Gemm.Multiply(N, D, pending, new MatrixRef<T>(_pendingQ[slot], 0, N, Transposed: true), new MatrixRef<T>(_pendingX[slot], 0, D),
            new MatrixRef<T>(rho, offset, D), accumulate: true, parallel: false);
    }

    /// <summary>
    /// A prompt that fits in the pending buffer waits there like generated tokens (a product for a few
    /// tokens would read and write all of ρ, 32 MB per layer on the paper config, for little work); a
    /// longer one joins ρ in one product per head.
    /// </summary>
    public void Absorb(int layer, Tensor<T> q, Tensor<T> x)
    {
        int t = x.Length / D;
        for (int h = 0; h < Heads; h++)
        {
            int slot = layer * Heads + h;
            if (_pendingCount[slot] + t <= Pending)
            {
                for (int s = 0; s < t; s++) Remember(slot, q.Span.Slice((h * t + s) * N, N), x.Span.Slice(s * D, D));
                continue;
            }
            Flush(slot);
            // ρ[h] += q[h]ᵀ·x: [N, T]·[T, D].
            Gemm.Multiply(N, D, t, q.Matrix(h * t * N, N, transposed: true), x.Matrix(0, D),
                new MatrixRef<T>(RhoLayers[layer], h * N * D, D), accumulate: true);
        }
    }

    /// <summary>
    /// A copy with every pending token added to ρ, in this state too: the two then continue with the same bits, and a
    /// snapshot is ρ alone (the file <see cref="StateSnapshot.Save"/> writes). The price: taking a copy moves this
    /// state's later rounding from what it would have been without one, as any flush does; an observer that must
    /// change nothing reads ρ with <see cref="CopyRho"/>.
    /// </summary>
    public SynapticState<T> Clone()
    {
        var copy = new SynapticState<T>(_rho.Length, Heads, N, D);
        var rho = Rho;
        for (int l = 0; l < rho.Length; l++) rho[l].CopyTo(copy.RhoLayers[l], 0);
        return copy;
    }
}
