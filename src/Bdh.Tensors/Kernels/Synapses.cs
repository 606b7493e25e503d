using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Bdh.Tensors.Kernels;

/// <summary>
/// One token's visit to one head's synaptic state ρ [N, D] (see <c>SynapticState</c> in Bdh.Model):
/// <c>a = Σ_n q[n]·ρ[n, :]</c> over ρ as it was, then <c>ρ[n, :] += q[n]·x</c>. Only rows with q[n] ≠ 0
/// are touched (q = rope(relu(·)) is sparse), and each of them is read once and written once: the read
/// and the write share one pass, since recurrent generation is bound by the bytes of ρ it moves.
/// </summary>
public static unsafe class Synapses
{
    /// <summary>q [N], rho [N·D] row-major, x [D]; a [D] is overwritten.</summary>
    public static void ReadThenWrite<T>(ReadOnlySpan<T> q, Span<T> rho, ReadOnlySpan<T> x, Span<T> a)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = q.Length, d = x.Length;
        if (rho.Length != n * d || a.Length != d) throw new ArgumentException($"rho must be [{n}, {d}] and a [{d}]");
        if (typeof(T) == typeof(float) && Vector512.IsHardwareAccelerated)
        {
            ReadThenWrite(MemoryMarshal.Cast<T, float>(q), MemoryMarshal.Cast<T, float>(rho),
                MemoryMarshal.Cast<T, float>(x), MemoryMarshal.Cast<T, float>(a));
            return;
        }
        a.Clear();
        for (int i = 0; i < n; i++)
        {
            T qi = q[i];
            if (qi == T.Zero) continue;
            Span<T> row = rho.Slice(i * d, d);
            TP.MultiplyAdd(row, qi, a, a);   // read: a += q[i]·ρ[i, :]
            TP.MultiplyAdd(x, qi, row, row); // write: ρ[i, :] += q[i]·x
        }
    }

    private const int Columns = 128; // 8 × 16 lanes: a's tile lives in registers while the rows stream by

    private static void ReadThenWrite(ReadOnlySpan<float> q, Span<float> rho, ReadOnlySpan<float> x, Span<float> a)
    {
        int n = q.Length, d = x.Length;
        int[] found = TensorPool<int>.Rent(n + 16);
        fixed (float* qP = q, rhoP = rho, xP = x, aP = a)
        fixed (int* rows = found)
        {
            int count = SparseGemm.NonZeros(qP, n, rows);
            int j = 0;
            for (; j <= d - Columns; j += Columns)
                Tile(count, rows, qP, rhoP + j, d, xP + j, aP + j);
            for (; j < d; j++) // columns past the last full tile
            {
                float sum = 0;
                for (int e = 0; e < count; e++)
                {
                    float qi = qP[rows[e]], old = rhoP[(long)rows[e] * d + j];
                    sum = MathF.FusedMultiplyAdd(qi, old, sum);
                    rhoP[(long)rows[e] * d + j] = MathF.FusedMultiplyAdd(qi, xP[j], old);
                }
                aP[j] = sum;
            }
        }
        TensorPool<int>.Return(found);
    }

    /// <summary>a[0..128) = Σ_e q[r]·ρ[r, 0..128), then ρ[r, 0..128) += q[r]·x[0..128), for r = rows[e].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Tile(int count, int* rows, float* q, float* rho, int ld, float* x, float* a)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        for (int e = 0; e < count; e++)
        {
            var qi = Vector512.Create(q[rows[e]]);
            float* row = rho + (long)rows[e] * ld;
            a0 = Step(qi, row, x, a0);
            a1 = Step(qi, row + 16, x + 16, a1);
            a2 = Step(qi, row + 32, x + 32, a2);
            a3 = Step(qi, row + 48, x + 48, a3);
            a4 = Step(qi, row + 64, x + 64, a4);
            a5 = Step(qi, row + 80, x + 80, a5);
            a6 = Step(qi, row + 96, x + 96, a6);
            a7 = Step(qi, row + 112, x + 112, a7);
        }
        a0.Store(a); a1.Store(a + 16); a2.Store(a + 32); a3.Store(a + 48);
        a4.Store(a + 64); a5.Store(a + 80); a6.Store(a + 96); a7.Store(a + 112);
    }

    /// <summary>16 columns of one row: returns acc + q·ρ, and stores ρ + q·x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Step(Vector512<float> q, float* row, float* x, Vector512<float> acc)
    {
        var old = Vector512.Load(row);
        Vector512.FusedMultiplyAdd(q, Vector512.Load(x), old).Store(row);
        return Vector512.FusedMultiplyAdd(q, old, acc);
    }
}
