using System.Runtime.Intrinsics;
using System.Runtime.CompilerServices;

namespace Bdh.Tensors;

/// <summary>
/// y [n] = relu(x [k]·W [k, n]) for one row x and a W fixed in advance: BDH's encoder for a generated token,
/// one W per head (this holds a stack of them, [count, k, n]).
/// Most of y is zero (a trained paper-config model fires ~36% of its neurons), yet a dense product reads all
/// of W. Here an int8 copy of W, a quarter of the bytes, bounds each output, and only the outputs that can be
/// positive are computed exactly, each a dot of x with its float column (<see cref="Gemv.MatrixTimesVector{T}"/>).
/// The outputs are exact, not approximated: the int8 copy only chooses which ones to compute.
/// </summary>
/// <remarks>
/// Column j is stored as q_j = round(W[:, j] / s_j), s_j = max|W[:, j]| / 127, so W[d, j] = s_j (q_dj + e_dj)
/// with |e_dj| ≤ ½ and (x·W)_j = s_j (r_j + Σ_d x_d e_dj) where r_j = Σ_d x_d q_dj. As |Σ_d x_d e_dj| ≤ ½‖x‖₁,
/// output j can be positive only if r_j > −½‖x‖₁. r_j and ‖x‖₁ are summed in float: each is off by at most
/// (k + 1)·2⁻²⁴ of Σ_d |x_d q_dj| ≤ 127‖x‖₁ (resp. of ‖x‖₁; the + 1 for a product rounded apart from its sum, on a CPU
/// without FMA); the margin that <see cref="Threshold"/> adds, 256·k·2⁻²⁴‖x‖₁, covers both for k below 2¹⁶. Memory: the float columns and the int8 panels, 1.25× W.
/// </remarks>
public sealed unsafe class ScreenedReluProduct
{
    private const int Panel = 128; // columns per int8 panel: 8 accumulators of 16 lanes (512 bits), in 1, 2 or 4 passes

    private readonly int _k, _n, _panelCount;
    private readonly float[] _columns;  // [count, n, k]: column j of each W as a contiguous row
    private readonly sbyte[] _panels;   // [count, ceil(n / 128), k, 128]: q, zero past column n
    private readonly bool _screens;

    /// <summary>Whether the int8 screen runs here (any accelerated vector width); without it every output is computed.</summary>
    public static bool Screens => Simd.Widest > 0;

    /// <param name="w">W [count, k, n]: count matrices of k rows of n.</param>
    public ScreenedReluProduct(Tensor<float> w)
    {
        if (w.Rank != 3) throw new ArgumentException("W must be [count, k, n]");
        int count = w.Shape[0], k = w.Shape[1], n = w.Shape[2];
        (_k, _n, _panelCount) = (k, n, (n + Panel - 1) / Panel);
        _columns = new float[count * n * k];
        Layout.SwapAxes(w, 1, 2, Tensor<float>.From(_columns, count, n, k), accumulate: false);
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
        Gemv.MatrixTimesVector<float>(_columns.AsSpan(matrix * _n * _k, _n * _k), x, y, where: computed);
        Kernels.Elementwise.Relu<float>(y, y);
        int count = (int)TP.Sum<float>(computed);
        TensorPool<float>.Return(candidates);
        return count;
    }

    /// <summary>
    /// candidates[0..128) = 1 where r = x·q over this panel's 128 columns exceeds the threshold, else 0: as many
    /// passes over the panel's k rows of 128 bytes as the width needs (one at 512 bits, two at 256, four at 128).
    /// </summary>
    private static void ScreenPanel(float* x, int k, sbyte* q, float threshold, float* candidates)
    {
        switch (Simd.Widest)
        {
            case 512: for (int j = 0; j < Panel; j += 8 * Float512.Count) ScreenColumns<Float512, Vector512<float>>(x, k, q + j, threshold, candidates + j); break;
            case 256: for (int j = 0; j < Panel; j += 8 * Float256.Count) ScreenColumns<Float256, Vector256<float>>(x, k, q + j, threshold, candidates + j); break;
            default: for (int j = 0; j < Panel; j += 8 * Float128.Count) ScreenColumns<Float128, Vector128<float>>(x, k, q + j, threshold, candidates + j); break;
        }
    }

    /// <summary>candidates[0..8·W.Count) for the panel's columns from q on: 8 accumulators, one int8 row per step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    internal static void ScreenColumns<W, V>(float* x, int k, sbyte* q, float threshold, float* candidates) where W : struct, IFloatVector<V> where V : struct
    {
        int w = W.Count;
        V r0 = default, r1 = default, r2 = default, r3 = default, r4 = default, r5 = default, r6 = default, r7 = default;
        for (int d = 0; d < k; d++, q += Panel)
        {
            var xd = W.Broadcast(x + d);
            r0 = W.MultiplyAdd(xd, W.WidenInt8(q), r0);
            r1 = W.MultiplyAdd(xd, W.WidenInt8(q + w), r1);
            r2 = W.MultiplyAdd(xd, W.WidenInt8(q + 2 * w), r2);
            r3 = W.MultiplyAdd(xd, W.WidenInt8(q + 3 * w), r3);
            r4 = W.MultiplyAdd(xd, W.WidenInt8(q + 4 * w), r4);
            r5 = W.MultiplyAdd(xd, W.WidenInt8(q + 5 * w), r5);
            r6 = W.MultiplyAdd(xd, W.WidenInt8(q + 6 * w), r6);
            r7 = W.MultiplyAdd(xd, W.WidenInt8(q + 7 * w), r7);
        }
        V bound = W.Create(threshold), one = W.Create(1f); // 1 where the screen passes, else 0
        W.Store(W.And(W.GreaterThan(r0, bound), one), candidates);
        W.Store(W.And(W.GreaterThan(r1, bound), one), candidates + w);
        W.Store(W.And(W.GreaterThan(r2, bound), one), candidates + 2 * w);
        W.Store(W.And(W.GreaterThan(r3, bound), one), candidates + 3 * w);
        W.Store(W.And(W.GreaterThan(r4, bound), one), candidates + 4 * w);
        W.Store(W.And(W.GreaterThan(r5, bound), one), candidates + 5 * w);
        W.Store(W.And(W.GreaterThan(r6, bound), one), candidates + 6 * w);
        W.Store(W.And(W.GreaterThan(r7, bound), one), candidates + 7 * w);
    }
}
