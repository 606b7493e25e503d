using BenchmarkDotNet.Running;
using Bdh.Benchmarks;
using Bdh.Tensors;

// `gflops [threads]`: best-of-N wall time per BDH shape, timed exactly as bench/peers/sgemm_openblas.c times
// OpenBLAS, so the two tables can stand side by side. `transposed [threads]`: the products that read A transposed, against
// the same A stored plain. `sparse [threads]`: the sparse kernel against the dense one on the products whose operand is
// mostly zeros once trained, by density. `openblas [threads]`: ours and OpenBLAS's sgemm in one process, alternately
// (per core: 1 thread). `gen CHECKPOINT [max]`: generation speed by position and path. `drift`: float32 RoPE phase
// error at long positions. `peak`: the measured FMA peak. `flops [GFLOP/s]`: a training step's flops, and their time at
// that rate. `width`: the vector width in bits the kernels run at under the JIT's knobs. `forks [threads] [gap ms]`: how
// a fork of short items spreads over the threads.
// Anything else goes to BenchmarkDotNet (GemmBenchmarks, KernelBenchmarks, TrainingStepBenchmarks, GenerationBenchmarks).
if (args.Length > 0 && args[0] == "gflops")
{
    Parallelism.Threads = args.Length > 1 ? int.Parse(args[1]) : Environment.ProcessorCount;
    Console.WriteLine($"BdhNative Gemm, {Parallelism.Threads} threads, Vector512 {System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated}");
    foreach (var shape in GemmShape.Bdh)
    {
        var (a, b, c) = shape.Operands();
        double best = double.MaxValue;
        for (int rep = 0; rep < 30; rep++)
            best = Math.Min(best, Timing.Seconds(() => Gemm.Multiply(shape.M, shape.N, shape.K, a, b, c, accumulate: false)));
        Console.WriteLine($"{shape.Name,-45} {shape.Flops / best / 1e9,7:0.0} GFLOP/s");
    }
    return;
}
if (args.Length > 0 && args[0] == "openblas")
{
    VersusOpenBlas.Run(args.Length > 1 ? int.Parse(args[1]) : Environment.ProcessorCount);
    return;
}
if (args.Length > 0 && args[0] == "sparse")
{
    SparseProducts.Run(args.Length > 1 ? int.Parse(args[1]) : Environment.ProcessorCount);
    return;
}
if (args.Length > 0 && args[0] == "transposed")
{
    TransposedA.Run(args.Length > 1 ? int.Parse(args[1]) : Environment.ProcessorCount);
    return;
}
if (args.Length > 0 && args[0] == "width")
{
    Console.WriteLine(Simd.Widest);
    return;
}
if (args.Length > 0 && args[0] == "peak")
{
    FmaPeak.Run();
    return;
}
if (args.Length > 0 && args[0] == "flops")
{
    StepFlops.Run(args.Length > 1 ? double.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 100);
    return;
}
if (args.Length > 0 && args[0] == "forks")
{
    ForkLatency.Run(args.Length > 1 ? int.Parse(args[1]) : Environment.ProcessorCount, args.Length > 2 ? double.Parse(args[2]) : 0.05);
    return;
}
if (args.Length > 0 && args[0] == "drift")
{
    PhaseDrift.Run();
    return;
}
if (args.Length > 1 && args[0] == "gen")
{
    GenerationProfile.Run(args[1], args.Length > 2 ? int.Parse(args[2]) : 2048);
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(GemmBenchmarks).Assembly).Run(args);
