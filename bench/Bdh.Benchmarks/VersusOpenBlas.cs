using System.Diagnostics;
using System.Runtime.InteropServices;
using Bdh.Tensors;

namespace Bdh.Benchmarks;

/// <summary>
/// `openblas [threads]`: our GEMM and OpenBLAS's <c>cblas_sgemm</c> (Debian's libopenblas0, loaded when this mode runs;
/// the library's `OPENBLAS_CORETYPE` picks its kernel) on the BDH shapes, in one process, alternately repetition by
/// repetition, each side first every other time. This VM's speed moves in spells shorter than a second, and two
/// processes run one after the other can each fall in a different one; here every spell touches both sides alike. Per
/// shape: each side's median and best GFLOP/s, and the ratio of the medians (ours / OpenBLAS's). The two results are
/// compared first: the same product, or the mode stops. Its figures are per core: run it on 1 thread. On more, each
/// library's idle threads spin for a while after its product (ours 2 ms, OpenBLAS's longer) and take cores from the
/// other's next one; on this 2-core VM that cut OpenBLAS's medians on the per-head shapes to under half its best.
/// </summary>
public static unsafe class VersusOpenBlas
{
    private const string Library = "libopenblas.so.0";
    private const int RowMajor = 101, NoTrans = 111, Trans = 112, Repetitions = 60;

    [DllImport(Library)]
    private static extern void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, float* a, int lda,
        float* b, int ldb, float beta, float* c, int ldc);

    [DllImport(Library)] private static extern void openblas_set_num_threads(int threads);
    [DllImport(Library)] private static extern nint openblas_get_corename();

    public static void Run(int threads)
    {
        Parallelism.Threads = threads;
        try { openblas_set_num_threads(threads); }
        catch (DllNotFoundException) { throw new InvalidOperationException($"openblas: {Library} is not installed (apt-get install libopenblas-dev)"); }
        Console.WriteLine($"BdhNative at {Simd.Widest} bits against OpenBLAS's {Marshal.PtrToStringAnsi(openblas_get_corename())} kernel, " +
            $"{threads} threads, {Repetitions} repetitions each, alternately");
        Console.WriteLine($"{"shape",-45} {"ours (best)",15} {"OpenBLAS (best)",17} {"ratio",7}");
        foreach (var shape in GemmShape.Bdh)
        {
            var (a, b, c) = shape.Operands();
            var theirs = new float[shape.M * shape.N];
            var times = (Ours: new List<double>(), Theirs: new List<double>());
            fixed (float* aArray = a.Array, bArray = b.Array, cP = theirs)
            {
                float* aP = aArray + a.Offset, bP = bArray + b.Offset;
                Gemm.Multiply(shape.M, shape.N, shape.K, a, b, c, accumulate: false);
                OpenBlas(shape, aP, a.Stride, bP, b.Stride, cP);
                double worst = 0;
                for (int i = 0; i < theirs.Length; i++) worst = Math.Max(worst, Math.Abs(c.Array[c.Offset + i] - theirs[i]) / (1 + Math.Abs(theirs[i])));
                if (worst > 1e-4) throw new InvalidOperationException($"{shape.Name}: our product and OpenBLAS's differ by {worst:e2}");
                for (int rep = 0; rep < Repetitions; rep++)
                    for (int side = 0; side < 2; side++)
                    {
                        bool ours = (rep + side) % 2 == 0;
                        var watch = Stopwatch.StartNew();
                        if (ours) Gemm.Multiply(shape.M, shape.N, shape.K, a, b, c, accumulate: false);
                        else OpenBlas(shape, aP, a.Stride, bP, b.Stride, cP);
                        (ours ? times.Ours : times.Theirs).Add(watch.Elapsed.TotalSeconds);
                    }
            }
            string Rate(List<double> t) => $"{shape.Flops / t.Median() / 1e9:0.0} ({shape.Flops / t.Min() / 1e9:0.0})";
            Console.WriteLine($"{shape.Name,-45} {Rate(times.Ours),15} {Rate(times.Theirs),17} {times.Theirs.Median() / times.Ours.Median(),6:0.00}x");
        }
    }

    private static void OpenBlas(GemmShape shape, float* a, int lda, float* b, int ldb, float* c) =>
        cblas_sgemm(RowMajor, shape.TransA ? Trans : NoTrans, shape.TransB ? Trans : NoTrans, shape.M, shape.N, shape.K, 1f, a, lda, b, ldb, 0f, c, shape.N);
}
