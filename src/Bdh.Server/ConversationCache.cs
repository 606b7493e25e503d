using Bdh.Model;
using Bdh.Model.Inference;

namespace Bdh.Server;

/// <summary>
/// Conversations kept between requests, found by their text: each entry is the synaptic state after a token sequence
/// (a prompt and its reply). A request whose prompt starts with a kept sequence resumes that state and reads only the
/// rest, so a chat's follow-up turn, sent as the whole conversation as OpenAI's API does, costs only its new tokens.
/// The entries fit in a memory budget (each holds ρ, <see cref="BdhLanguageModel.StateBytes"/>, and its small buffer of
/// pending tokens, <see cref="SynapticState{T}.Bytes"/> in all); the least recently used is dropped first.
/// </summary>
internal sealed class ConversationCache(BdhLanguageModel model, long budgetBytes)
{
    private sealed record Entry(int[] Tokens, StateSnapshot Snapshot)
    {
        public long LastUse { get; set; }
    }

    private readonly List<Entry> _entries = [];
    private long _clock, _bytes;

    public int Count
    {
        get { lock (_entries) return _entries.Count; }
    }

    /// <summary>Bytes the kept states hold, at most the budget.</summary>
    public long Bytes
    {
        get { lock (_entries) return _bytes; }
    }

    /// <summary>A session for <paramref name="prompt"/>: resumed after its longest kept prefix, whose length is returned, or new (0).</summary>
    public (BdhSession Session, int CachedTokens) Resume(int[] prompt)
    {
        Entry? best = null;
        lock (_entries)
        {
            foreach (var entry in _entries)
                if (entry.Tokens.Length <= prompt.Length && entry.Tokens.Length > (best?.Tokens.Length ?? 0) && prompt.AsSpan().StartsWith(entry.Tokens))
                    best = entry;
            if (best is not null) best.LastUse = ++_clock;
        }
        // Resuming copies the snapshot's state, which nothing writes once kept: no lock needed for the copy.
        return best is null ? (model.StartSession(), 0) : (model.ResumeSession(best.Snapshot), best.Tokens.Length);
    }

    /// <summary>Ends <paramref name="session"/>, keeping its state as the state after <paramref name="tokens"/>, dropping the least recently used beyond the budget.</summary>
    public void Keep(int[] tokens, BdhSession session)
    {
        if (budgetBytes < model.StateBytes || tokens.Length == 0) return;
        var entry = new Entry(tokens, session.End());
        lock (_entries)
        {
            if (_entries.Find(e => e.Tokens.AsSpan().SequenceEqual(tokens)) is { } same) Drop(same);
            while (_entries.Count > 0 && _bytes + entry.Snapshot.State.Bytes > budgetBytes) Drop(_entries.MinBy(e => e.LastUse)!);
            if (_bytes + entry.Snapshot.State.Bytes > budgetBytes) return;
            entry.LastUse = ++_clock;
            _entries.Add(entry);
            _bytes += entry.Snapshot.State.Bytes;
        }
    }

    private void Drop(Entry entry)
    {
        _entries.Remove(entry);
        _bytes -= entry.Snapshot.State.Bytes;
    }
}
