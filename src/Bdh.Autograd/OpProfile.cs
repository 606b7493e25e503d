using System.Diagnostics;
using System.Text;

namespace Bdh.Autograd;

/// <summary>
/// Where a training step spends its time, op by op (<c>bdh train --profile</c>). While enabled, an op's
/// forward is charged the time since the previous event on the graph (its kernel runs just before it
/// records its node), its backward the time of its closure (a graph built while profiling is on carries a timed
/// closure, one built while it is off carries none). Ops are keyed by name and output shape, so products of
/// different shapes stay apart.
/// </summary>
public static class OpProfile
{
    private sealed class Entry
    {
        public double Forward, Backward;
        public long Calls;
    }

    private static readonly Dictionary<string, Entry> Entries = [];
    private static long _last;

    public static bool Enabled { get; set; }

    /// <summary>Starts timing a forward pass: what ran before it is not charged to its first op.</summary>
    internal static void Start() => _last = Stopwatch.GetTimestamp();

    /// <summary>Charges the time since <paramref name="since"/> (a Stopwatch timestamp) to <paramref name="key"/>, as backward-side work.</summary>
    internal static void Record(string key, long since) => Charge(key, backward: true, since);

    internal static void RecordForward(string op, int[] shape) => Charge($"{op} {Tensor<float>.Format(shape)}", backward: false, _last);

    /// <summary><paramref name="backward"/>, charging its time to the backward of <paramref name="op"/> at <paramref name="shape"/>.</summary>
    internal static Action Timed(string op, int[] shape, Action backward) => () =>
    {
        long start = Stopwatch.GetTimestamp();
        backward();
        Charge($"{op} {Tensor<float>.Format(shape)}", backward: true, start);
    };

    private static void Charge(string key, bool backward, long since)
    {
        long now = Stopwatch.GetTimestamp();
        lock (Entries)
        {
            if (!Entries.TryGetValue(key, out var e)) Entries[key] = e = new Entry();
            double ms = (now - since) * 1000.0 / Stopwatch.Frequency;
            if (backward) e.Backward += ms;
            else { e.Forward += ms; e.Calls++; }
        }
        _last = now;
    }

    /// <summary>A table of milliseconds per step, forward and backward, largest total first.</summary>
    public static string Report(int steps)
    {
        var text = new StringBuilder($"{"op and output shape",-36} {"calls",6} {"fwd ms",8} {"bwd ms",8} {"share",6}\n");
        lock (Entries)
        {
            double total = Entries.Values.Sum(e => e.Forward + e.Backward);
            foreach (var (key, e) in Entries.OrderByDescending(kv => kv.Value.Forward + kv.Value.Backward))
                text.AppendLine($"{key,-36} {e.Calls / (double)steps,6:0.#} {e.Forward / steps,8:0.00} {e.Backward / steps,8:0.00} {(e.Forward + e.Backward) / total,6:P0}");
            text.Append($"{"total per step",-36} {"",6} {Entries.Values.Sum(e => e.Forward) / steps,8:0.00} {Entries.Values.Sum(e => e.Backward) / steps,8:0.00}");
        }
        return text.ToString();
    }
}
