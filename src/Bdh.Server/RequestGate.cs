namespace Bdh.Server;

/// <summary>At most <c>concurrent</c> requests generate at once and <c>queued</c> more wait their turn; the rest are turned away (429).</summary>
internal sealed class RequestGate(int concurrent, int queued)
{
    private readonly SemaphoreSlim _slots = new(concurrent, concurrent);
    private int _admitted;

    /// <summary>A slot, once one is free; null when the queue is full.</summary>
    public async Task<IDisposable?> EnterAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Increment(ref _admitted) > concurrent + queued)
        {
            Interlocked.Decrement(ref _admitted);
            return null;
        }
        try { await _slots.WaitAsync(cancellationToken).ConfigureAwait(false); }
        catch
        {
            Interlocked.Decrement(ref _admitted);
            throw;
        }
        return new Slot(this);
    }

    private sealed class Slot(RequestGate gate) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) != 0) return;
            gate._slots.Release();
            Interlocked.Decrement(ref gate._admitted);
        }
    }
}
