using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Bdh.Tensors;

/// <summary>
/// y [n] = relu(x [k]·W [k, n]) for one row x and a W fixed in advance: BDH's encoder for a generated token,
/// one W per head (this holds a stack of them, [count, k, n]).
/// Most of y is zero (a trained paper-config model fires ~36% of its neurons), yet a dense product reads all
/// of W. Here an int8 copy of W, a quarter of the bytes, bounds each output, and only the outputs that can be
/// positive are computed exactly, each a dot of x with its float column (<see cref="Gemm.MatrixTimesVector{T}"/>).
/// The outputs are exact, not approximated: the int8 copy only chooses which ones to compute.
/// </summary>
/// <remarks>
/// Column j is stored as q_j = round(W[:, j] / s_j), s_j = max|W[:, j]| / 127, so W[d, j] = s_j (q_dj + e_dj)
/// with |e_dj| ≤ ½ and (x·W)_j = s_j (r_j + Σ_d x_d e_dj) where r_j = Σ_d x_d q_dj. As |Σ_d x_d e_dj| ≤ ½‖x‖₁,
/// output j can be positive only if r_j > −½‖x‖₁. r_j and ‖x‖₁ are summed in float: each is off by at most
/// k·2⁻²⁴ of Σ_d |x_d q_dj| ≤ 127‖x‖₁ (resp. of ‖x‖₁); the margin that <see cref="Threshold"/> adds covers both
/// for k below 2¹⁶. Memory: the float columns and the int8 panels, 1.25× W.
/// </remarks>
public sealed unsafe class ScreenedReluProduct
{
    private const int Panel = 128; // columns per int8 panel: the 8 zmm accumulators of the screening kernel

    private readonly int _k, _n, _panelCount;
    private readonly float[] _columns;  // [count, n, k]: column j of each W as a contiguous row
    private readonly sbyte[] _panels;   // [count, ceil(n / 128), k, 128]: q, zero past column n
    private readonly bool _screens;

    /// <summary>Whether the int8 screen runs here (AVX-512); without it every output is computed.</summary>
    public static bool Screens => Avx512F.IsSupported;

    /// <param name="w">W [count, k, n]: count matrices of k rows of n.</param>
    public ScreenedReluProduct(Tensor<float> w)
    {
        if (w.Rank != 3) throw new ArgumentException("W must be [count, k, n]");
        int count = w.Shape[0], k = w.Shape[1], n = w.Shape[2];
        (_k, _n, _panelCount) = (k, n, (n + Panel - 1) / Panel);
        _columns = new float[count * n * k];
        BroadcastOps.SwapAxes(w, 1, 2, Tensor<float>.From(_columns, count, n, k), accumulate: false);
        var scale = new float[count * n];
        for (int j = 0; j < scale.Length; j++)
        {
            float max = MathF.Abs(TP.MaxMagnitude<float>(_columns.AsSpan(j * k, k)));
            scale[j] = max == 0 ? 1 : max / 127;
        }
        // A NaN or infinity in W has no int8 bound, and the margin holds for k below 2¹⁶: else compute every output.
        bool finite = scale.Length == 0 || float.IsFinite(scale[TP.IndexOfMax<float>(scale)]); // IndexOfMax returns the first NaN if any
        _screens = Screens && k < 1 << 16 && finite;
        _panels = new sbyte[count * _panelCount * k * Panel];
        var q = new float[Panel];
        for (int m = 0; m < count; m++)
            for (int d = 0; d < k; d++)
                for (int j0 = 0; j0 < n; j0 += Panel)
                {
                    int width = Math.Min(Panel, n - j0);
                    var row = q.AsSpan(0, width);
                    TP.Divide(w.Span.Slice((m * k + d) * n + j0, width), scale.AsSpan(m * n + j0, width), row); // q = round(W[d, j] / s_j)
                    TP.Round(row, row);
                    TP.ConvertTruncating<float, sbyte>(row, _panels.AsSpan(((m * _panelCount + j0 / Panel) * k + d) * Panel, width));
                }
    }

    /// <summary>The bound r_j must pass for output j to be computed: −(½ + 128·k·2⁻²³)‖x‖₁ (see the remarks).</summary>
    private float Threshold(float xNorm1) => -(0.5f + 128f * _k / (1 << 23)) * xNorm1;

    /// <summary>y [n] = relu(x [k]·W[matrix]); returns how many outputs were computed (the others are known to be 0).</summary>
    public int Apply(int matrix, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length != _k || y.Length != _n) throw new ArgumentException($"x must have {_k} entries and y {_n}");
        float[] candidates = TensorPool<float>.Rent(_panelCount * Panel); // 1 where output j can be positive, else 0
        float xNorm1 = TP.SumOfMagnitudes(x);
        if (_screens && float.IsFinite(xNorm1))
        {
            fixed (float* xP = x, c = candidates)
            fixed (sbyte* p = _panels)
                for (int i = 0; i < _panelCount; i++)
                    ScreenPanel(xP, _k, p + ((long)matrix * _panelCount + i) * _k * Panel, Threshold(xNorm1), c + i * Panel);
        }
        else candidates.AsSpan().Fill(1); // no screen, or a NaN or infinity to pass on as the dense product would
        var computed = candidates.AsSpan(0, _n);
        Gemm.MatrixTimesVector<float>(_columns.AsSpan(matrix * _n * _k, _n * _k), x, y, where: computed);
        Kernels.Elementwise.Relu<float>(y, y);
        int count = (int)TP.Sum<float>(computed);
        TensorPool<float>.Return(candidates);
        return count;
    }

    /// <summary>
    /// candidates[0..128) = 1 where r = x·q over this panel's 128 columns exceeds the threshold, else 0.
    /// The panel's k rows of 128 bytes lie one after the other, so it streams.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void ScreenPanel(float* x, int k, sbyte* q, float threshold, float* candidates)
    {
        Vector512<float> r0 = default, r1 = default, r2 = default, r3 = default, r4 = default, r5 = default, r6 = default, r7 = default;
        for (int d = 0; d < k; d++, q += Panel)
        {
            var xd = Vector512.Create(x[d]);
            r0 = Vector512.FusedMultiplyAdd(xd, Widen(q), r0);
            r1 = Vector512.FusedMultiplyAdd(xd, Widen(q + 16), r1);
            r2 = Vector512.FusedMultiplyAdd(xd, Widen(q + 32), r2);
            r3 = Vector512.FusedMultiplyAdd(xd, Widen(q + 48), r3);
            r4 = Vector512.FusedMultiplyAdd(xd, Widen(q + 64), r4);
            r5 = Vector512.FusedMultiplyAdd(xd, Widen(q + 80), r5);
            r6 = Vector512.FusedMultiplyAdd(xd, Widen(q + 96), r6);
            r7 = Vector512.FusedMultiplyAdd(xd, Widen(q + 112), r7);
        }
        var bound = Vector512.Create(threshold);
        Candidates(r0, bound).Store(candidates);
        Candidates(r1, bound).Store(candidates + 16);
        Candidates(r2, bound).Store(candidates + 32);
        Candidates(r3, bound).Store(candidates + 48);
        Candidates(r4, bound).Store(candidates + 64);
        Candidates(r5, bound).Store(candidates + 80);
        Candidates(r6, bound).Store(candidates + 96);
        Candidates(r7, bound).Store(candidates + 112);
    }

    /// <summary>16 int8 values as floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Widen(sbyte* q) => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(q)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Candidates(Vector512<float> r, Vector512<float> bound) =>
        Vector512.ConditionalSelect(Vector512.GreaterThan(r, bound), Vector512<float>.One, Vector512<float>.Zero);
}
