using FsCheck;
using FsCheck.Xunit;

namespace Bdh.Tensors.Tests;

public class TensorPoolTests
{
    // Each test rents from a pool of its own element type: the pool is per type, so tests that run at the same time
    // on the float pool cannot move these counts.
    private readonly record struct GenerationProbe(float Value);
    private readonly record struct StepProbe(float Value);
    private readonly record struct ClassProbe(float Value);

    [Property(MaxTest = 300)]
    public void ASizeClassHoldsTheLengthWithAtMostAQuarterMore(byte octaveRaw, DoNotSize<uint> bits)
    {
        // FsCheck keeps a plain int within its size (100 at most): the length is drawn from an octave, 0 or [2ᵉ⁻¹, 2ᵉ) for
        // e up to 31, so every class width is reached, and so are the lengths near Array.MaxLength that cannot round up.
        int octave = octaveRaw % 32;
        int length = octave == 0 ? 0 : (int)Math.Min(Array.MaxLength, (1L << (octave - 1)) + bits.Item % (1L << (octave - 1)));
        int size = TensorPool<float>.ClassLength(length);
        Assert.True(size >= length, $"{length} -> {size}");
        Assert.True(length <= 64 ? size == length : size <= 1.25 * length, $"{length} -> {size}");
        Assert.True(TensorPool<float>.ClassLength(length + 1) >= size, $"classes are monotone at {length}");
        Assert.Equal(size, TensorPool<float>.ClassLength(size)); // a class length is its own class
    }

    [Theory]
    [InlineData(1 << 21)] // BDH's activations: xs at the `cpu` preset's batch
    [InlineData(48)]
    [InlineData(5_000)]
    public void ARentedArrayIsItsLengthsClassAndOneCacheLine(int length)
    {
        // The cache line of slack comes after the rounding: a tensor of 2ᵐ elements must not be moved to the next class up.
        var array = TensorPool<ClassProbe>.Rent(length);
        Assert.Equal(TensorPool<ClassProbe>.ClassLength(length) + TensorPool<ClassProbe>.Alignment / sizeof(float), array.Length);
        TensorPool<ClassProbe>.Return(array);
    }

    [Fact]
    public void ALongGenerationOfEverChangingLengthsKeepsThePoolBounded()
    {
        // Full-recompute generation: step t rents its activations for t tokens (lengths t·512 and t²), then returns them.
        // With a pool by exact length, every step's arrays would stay pooled: ~1.7 GB of probes here.
        long pooledMax = 0, stepBytesMax = 0;
        for (int t = 1; t <= 600; t++)
        {
            int[] lengths = [t * 512, t * 512, t * t, t * 128, 256];
            var arrays = lengths.Select(TensorPool<GenerationProbe>.Rent).ToList();
            Assert.All(arrays.Zip(lengths), p => Assert.True(p.First.Length >= p.Second));
            stepBytesMax = Math.Max(stepBytesMax, lengths.Sum(n => 4L * n));
            arrays.ForEach(TensorPool<GenerationProbe>.Return);
            pooledMax = Math.Max(pooledMax, TensorPool<GenerationProbe>.PooledBytes);
        }
        // Never more pooled than the headroom times what was in use at once, and that is one step's work rounded up to its classes.
        Assert.True(pooledMax <= TensorPool<GenerationProbe>.Headroom * TensorPool<GenerationProbe>.PeakInUseBytes,
            $"pooled {pooledMax} > {TensorPool<GenerationProbe>.Headroom} x peak in use {TensorPool<GenerationProbe>.PeakInUseBytes}");
        Assert.True(TensorPool<GenerationProbe>.PeakInUseBytes <= 1.25 * stepBytesMax, $"peak in use {TensorPool<GenerationProbe>.PeakInUseBytes}, largest step {stepBytesMax}");
    }

    [Fact]
    public void ARepeatedStepTakesEveryArrayFromThePool()
    {
        // A training step: the same working set every time, held at once, and between its rents short-lived arrays of
        // other classes, each returned before the next is rented (a sparse product's lists): never in use at the peak,
        // but back every step. After the first step, nothing new is allocated.
        int[] lengths = [100_000, 100_000, 3_000, 65, 1];
        int[] transients = [40_000, 30_000, 20_000, 9_000];
        void Step(StepProbe[][] held)
        {
            for (int i = 0; i < lengths.Length; i++) held[i] = TensorPool<StepProbe>.Rent(lengths[i]);
            foreach (int length in transients) TensorPool<StepProbe>.Return(TensorPool<StepProbe>.Rent(length));
            for (int i = 0; i < lengths.Length; i++) TensorPool<StepProbe>.Return(held[i]);
        }
        var first = new StepProbe[lengths.Length][];
        Step(first);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var rented = new StepProbe[lengths.Length][];
        for (int round = 0; round < 10; round++) Step(rented);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 1000, $"{allocated} bytes allocated by ten repeated steps");
        Assert.Contains(rented[0], first); // the same arrays come back
    }
}
