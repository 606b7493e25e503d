namespace Bdh.Tensors.Tests;

public class ParallelismTests
{
    [Theory]
    [InlineData(2, 2)]
    [InlineData(2, 7)]
    [InlineData(3, 2)]
    [InlineData(4, 1000)]
    public void ForRunsEveryItemOnceJobAfterJob(int threads, int count) => Threads.On(threads, () =>
    {
        // Many jobs back to back, as the kernels fork: workers that join late or spin between jobs must neither skip
        // an item nor run one twice.
        for (int job = 0; job < 300; job++)
        {
            var runs = new int[count];
            Parallelism.For(count, i => Interlocked.Increment(ref runs[i]));
            Assert.True(runs.All(r => r == 1), $"job {job}: runs {string.Join(",", runs)}");
        }
    });

    [Fact]
    public void CallersOnSeveralThreadsAndNestedCallsEachGetAllTheirItems() => Threads.On(2, () =>
    {
        // Four threads share the team (one holds it, the others fall back to the thread pool), and every item forks again.
        var totals = new long[4];
        var callers = Enumerable.Range(0, 4).Select(c => new Thread(() =>
        {
            for (int job = 0; job < 200; job++)
                Parallelism.For(3, i => Parallelism.For(5, j => Interlocked.Add(ref totals[c], 1 + i * 5 + j)));
        })).ToArray();
        foreach (var t in callers) t.Start();
        foreach (var t in callers) t.Join();
        Assert.All(totals, total => Assert.Equal(200L * Enumerable.Range(1, 15).Sum(), total));
    });

    [Fact]
    public void AnItemsExceptionReachesTheCallerAndTheNextJobStillRuns() => Threads.On(2, () =>
    {
        var error = Assert.Throws<AggregateException>(() => Parallelism.For(8, i => { if (i == 5) throw new InvalidOperationException("item 5"); }));
        Assert.Equal("item 5", Assert.IsType<InvalidOperationException>(error.InnerExceptions.Single()).Message);
        var runs = new int[8];
        Parallelism.For(8, i => Interlocked.Increment(ref runs[i]));
        Assert.All(runs, r => Assert.Equal(1, r));
    });
}
